//! The load-time type check: every clause's CEL tree is checked against the
//! policy's declared inputs, parameters and earlier clauses, and turned into
//! a typed tree ([`Expr`]) that the columnar evaluator runs. The `cel` crate
//! has no checker of its own; this one accepts only what both the `cel`
//! interpreter and the columnar evaluator compute the same way.

use std::sync::Arc;

use cel::common::ast::{operators as op, Expr as CelExpr, IdedExpr, LiteralValue};

use crate::types::{parse_date, Ty};

/// Where a name in a clause points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Input(usize),
    Parameter(usize),
    Clause(usize),
    /// The date the decision is made for.
    Today,
    /// A comprehension's variable, counted from the innermost (0).
    Local(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFn {
    Years,
    Months,
    Days,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Exists,
    All,
    ExistsOne,
}

/// A checked, typed expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub ty: Ty,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Arc<str>),
    Date(chrono::NaiveDate),
    Var(Slot),
    Field(Box<Expr>, usize),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    ToInt(Box<Expr>),
    ToDouble(Box<Expr>),
    Between(DateFn, Box<Expr>, Box<Expr>),
    Size(Box<Expr>),
    Sum(Box<Expr>),
    List(Vec<Expr>),
    Quantify(Quantifier, Box<Expr>, Box<Expr>),
    Map(Box<Expr>, Box<Expr>),
    Filter(Box<Expr>, Box<Expr>),
}

/// A type error, with the CEL node it was found at.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckError {
    pub message: String,
    pub node: u64,
}

/// The names a clause may use, innermost last.
pub struct Scope<'a> {
    pub names: Vec<(&'a str, Slot, Ty)>,
    locals: Vec<(String, Ty)>,
}

/// The functions a clause may call, besides the operators, `size`, `int`,
/// `double` and the list macros. Each is registered with the interpreter.
pub const FUNCTIONS: &[&str] = &["years_between", "months_between", "days_between", "sum", "date"];

impl<'a> Scope<'a> {
    pub fn new(names: Vec<(&'a str, Slot, Ty)>) -> Self {
        Scope {
            names,
            locals: Vec::new(),
        }
    }

    fn lookup(&self, name: &str) -> Option<(Slot, Ty)> {
        if let Some(pos) = self.locals.iter().rposition(|(n, _)| n == name) {
            let depth = self.locals.len() - 1 - pos;
            return Some((Slot::Local(depth), self.locals[pos].1.clone()));
        }
        self.names
            .iter()
            .rev()
            .find(|(n, _, _)| *n == name)
            .map(|(_, s, t)| (*s, t.clone()))
    }

    fn known(&self) -> String {
        let mut names: Vec<&str> = self.names.iter().map(|(n, _, _)| *n).collect();
        names.extend(self.locals.iter().map(|(n, _)| n.as_str()));
        names.join(", ")
    }

    /// Checks `expr` and returns its typed tree.
    pub fn check(&mut self, expr: &IdedExpr) -> Result<Expr, CheckError> {
        let err = |message: String| CheckError { message, node: expr.id };
        match &expr.expr {
            CelExpr::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(b) => typed(Ty::Bool, Kind::Bool(**b)),
                LiteralValue::Int(i) => typed(Ty::Int, Kind::Int(**i)),
                LiteralValue::Double(d) => typed(Ty::Double, Kind::Double(**d)),
                LiteralValue::String(s) => typed(Ty::String, Kind::Str(Arc::from(s.inner()))),
                LiteralValue::UInt(_) => {
                    return Err(err("unsigned integers are not used in policies; write 5, not 5u".into()))
                }
                LiteralValue::Null => {
                    return Err(err(
                        "null is not used in policies; give the input a default instead".into()
                    ))
                }
                LiteralValue::Bytes(_) => return Err(err("bytes are not used in policies".into())),
            }),
            CelExpr::Ident(name) => match self.lookup(name) {
                Some((slot, ty)) => Ok(typed(ty, Kind::Var(slot))),
                None => Err(err(format!(
                    "unknown name '{name}'; this clause may use: {}",
                    self.known()
                ))),
            },
            CelExpr::Select(sel) => {
                if sel.test {
                    return Err(err(
                        "has() is not used in policies: every declared input has a value".into()
                    ));
                }
                let base = self.check(&sel.operand)?;
                match base.ty.field(&sel.field) {
                    Some((i, t)) => Ok(typed(t.clone(), Kind::Field(Box::new(base.clone()), i))),
                    None => Err(err(format!("{} has no field '{}'", base.ty, sel.field))),
                }
            }
            CelExpr::List(list) => {
                let items = list
                    .elements
                    .iter()
                    .map(|e| self.check(e))
                    .collect::<Result<Vec<_>, _>>()?;
                let Some(first) = items.first() else {
                    return Err(err("an empty list literal has no type".into()));
                };
                let ty = first.ty.clone();
                if let Some(other) = items.iter().find(|e| e.ty != ty) {
                    return Err(err(format!("a list mixes {ty} and {}", other.ty)));
                }
                Ok(typed(Ty::List(Box::new(ty)), Kind::List(items)))
            }
            CelExpr::Call(call) => self.call(expr.id, &call.func_name, call.target.as_deref(), &call.args),
            CelExpr::Comprehension(c) => self.comprehension(expr.id, c),
            CelExpr::Map(_) | CelExpr::Struct(_) => {
                Err(err("map and message literals are not used in policies".into()))
            }
            CelExpr::Unspecified => Err(err("empty expression".into())),
        }
    }

    fn call(&mut self, id: u64, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> Result<Expr, CheckError> {
        let err = |message: String| CheckError { message, node: id };
        // `l.size()` is `size(l)`.
        let mut all: Vec<&IdedExpr> = target.into_iter().collect();
        all.extend(args.iter());
        let arity = |n: usize| -> Result<(), CheckError> {
            if all.len() == n {
                Ok(())
            } else {
                Err(err(format!(
                    "{} takes {n} argument(s), found {}",
                    pretty(name),
                    all.len()
                )))
            }
        };
        let b = Box::new;
        match name {
            op::LOGICAL_AND | op::LOGICAL_OR => {
                arity(2)?;
                let l = self.expect(all[0], &Ty::Bool, name)?;
                let r = self.expect(all[1], &Ty::Bool, name)?;
                Ok(typed(Ty::Bool, if name == op::LOGICAL_AND { Kind::And(b(l), b(r)) } else { Kind::Or(b(l), b(r)) }))
            }
            op::LOGICAL_NOT => {
                arity(1)?;
                let x = self.expect(all[0], &Ty::Bool, name)?;
                Ok(typed(Ty::Bool, Kind::Not(b(x))))
            }
            op::NEGATE => {
                arity(1)?;
                let x = self.check(all[0])?;
                if !x.ty.is_numeric() {
                    return Err(err(format!("cannot negate {}", x.ty)));
                }
                Ok(typed(x.ty.clone(), Kind::Neg(b(x))))
            }
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO => {
                arity(2)?;
                let l = self.check(all[0])?;
                let r = self.check(all[1])?;
                let which = match name {
                    op::ADD => Arith::Add,
                    op::SUBSTRACT => Arith::Sub,
                    op::MULTIPLY => Arith::Mul,
                    op::DIVIDE => Arith::Div,
                    _ => Arith::Rem,
                };
                let ok = match (&l.ty, &r.ty) {
                    (Ty::Int, Ty::Int) => true,
                    (Ty::Double, Ty::Double) => which != Arith::Rem,
                    _ => false,
                };
                if !ok {
                    let hint = if l.ty.is_numeric() && r.ty.is_numeric() {
                        " (CEL does not mix int and double in arithmetic: convert one side with double(...) or int(...))"
                    } else {
                        ""
                    };
                    return Err(err(format!("cannot apply {} to {} and {}{hint}", pretty(name), l.ty, r.ty)));
                }
                Ok(typed(l.ty.clone(), Kind::Arith(which, b(l), b(r))))
            }
            op::EQUALS | op::NOT_EQUALS | op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS => {
                arity(2)?;
                let l = self.check(all[0])?;
                let r = self.check(all[1])?;
                let which = match name {
                    op::EQUALS => Cmp::Eq,
                    op::NOT_EQUALS => Cmp::Ne,
                    op::LESS => Cmp::Lt,
                    op::LESS_EQUALS => Cmp::Le,
                    op::GREATER => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                let comparable = (l.ty.is_numeric() && r.ty.is_numeric())
                    || (l.ty == r.ty && matches!(l.ty, Ty::String | Ty::Date))
                    || (l.ty == r.ty && l.ty == Ty::Bool && matches!(which, Cmp::Eq | Cmp::Ne));
                if !comparable {
                    return Err(err(format!("cannot compare {} with {} by {}", l.ty, r.ty, pretty(name))));
                }
                Ok(typed(Ty::Bool, Kind::Cmp(which, b(l), b(r))))
            }
            op::CONDITIONAL => {
                arity(3)?;
                let c = self.expect(all[0], &Ty::Bool, "the condition of ?:")?;
                let t = self.check(all[1])?;
                let f = self.check(all[2])?;
                if t.ty != f.ty {
                    return Err(err(format!("the branches of ?: give {} and {}; they must have one type", t.ty, f.ty)));
                }
                Ok(typed(t.ty.clone(), Kind::Cond(b(c), b(t), b(f))))
            }
            op::IN => {
                arity(2)?;
                let x = self.check(all[0])?;
                let list = self.check(all[1])?;
                match &list.ty {
                    Ty::List(inner) if **inner == x.ty && matches!(x.ty, Ty::Int | Ty::String | Ty::Bool | Ty::Date) => {}
                    Ty::List(inner) => {
                        return Err(err(format!("'in' needs a list of {}, found list<{inner}>", x.ty)))
                    }
                    other => return Err(err(format!("'in' needs a list on its right, found {other}"))),
                }
                Ok(typed(Ty::Bool, Kind::In(b(x), b(list))))
            }
            "size" => {
                arity(1)?;
                let l = self.check(all[0])?;
                if !matches!(l.ty, Ty::List(_)) {
                    return Err(err(format!("size() is for lists here, found {}", l.ty)));
                }
                Ok(typed(Ty::Int, Kind::Size(b(l))))
            }
            "int" | "double" => {
                arity(1)?;
                let x = self.check(all[0])?;
                if !x.ty.is_numeric() {
                    return Err(err(format!("{name}() converts numbers, found {}", x.ty)));
                }
                Ok(if name == "int" {
                    typed(Ty::Int, Kind::ToInt(b(x)))
                } else {
                    typed(Ty::Double, Kind::ToDouble(b(x)))
                })
            }
            "years_between" | "months_between" | "days_between" => {
                arity(2)?;
                let from = self.expect(all[0], &Ty::Date, name)?;
                let to = self.expect(all[1], &Ty::Date, name)?;
                let which = match name {
                    "years_between" => DateFn::Years,
                    "months_between" => DateFn::Months,
                    _ => DateFn::Days,
                };
                Ok(typed(Ty::Int, Kind::Between(which, b(from), b(to))))
            }
            "sum" => {
                arity(1)?;
                let l = self.check(all[0])?;
                // Always a double: an empty list's sum must have one type
                // whatever its elements would have been.
                match &l.ty {
                    Ty::List(inner) if inner.is_numeric() => Ok(typed(Ty::Double, Kind::Sum(b(l)))),
                    other => Err(err(format!("sum() needs a list of numbers, found {other}"))),
                }
            }
            "date" => {
                arity(1)?;
                match &all[0].expr {
                    CelExpr::Literal(LiteralValue::String(s)) => {
                        let d = parse_date(s.inner()).map_err(err)?;
                        Ok(typed(Ty::Date, Kind::Date(d)))
                    }
                    _ => Err(err("date() takes a literal 'YYYY-MM-DD'".into())),
                }
            }
            other => Err(err(format!(
                "unknown function {}; policies may use the operators, size, int, double, exists, all, exists_one, map, filter and {}",
                pretty(other),
                FUNCTIONS.join(", ")
            ))),
        }
    }

    fn expect(&mut self, e: &IdedExpr, ty: &Ty, what: &str) -> Result<Expr, CheckError> {
        let x = self.check(e)?;
        if &x.ty != ty {
            return Err(CheckError {
                message: format!("{} needs {ty}, found {}", pretty(what), x.ty),
                node: e.id,
            });
        }
        Ok(x)
    }

    /// Recognises the expansions of `exists`, `all`, `exists_one`, `map` and
    /// `filter`, the only comprehensions a policy may write.
    fn comprehension(&mut self, id: u64, c: &cel::common::ast::ComprehensionExpr) -> Result<Expr, CheckError> {
        let err = |message: String| CheckError { message, node: id };
        let list = self.check(&c.iter_range)?;
        let Ty::List(elem) = list.ty.clone() else {
            return Err(err(format!("a list macro needs a list, found {}", list.ty)));
        };
        if self.lookup(&c.iter_var).is_some() {
            return Err(err(format!(
                "the variable '{}' hides a name already in use",
                c.iter_var
            )));
        }
        let accu = c.accu_var.as_str();
        let is_accu = |e: &IdedExpr| matches!(&e.expr, CelExpr::Ident(n) if n == accu);
        fn call(e: &IdedExpr) -> Option<(&str, &[IdedExpr])> {
            match &e.expr {
                CelExpr::Call(call) if call.target.is_none() => Some((call.func_name.as_str(), call.args.as_slice())),
                _ => None,
            }
        }
        let init = &c.accu_init.expr;
        // Which macro, and the body to check with the variable bound.
        let shape: Option<(&str, &IdedExpr)> = match (init, call(&c.loop_step)) {
            (CelExpr::Literal(LiteralValue::Boolean(b)), Some((f, args)))
                if args.len() == 2
                    && is_accu(&args[0])
                    && ((!**b && f == op::LOGICAL_OR) || (**b && f == op::LOGICAL_AND)) =>
            {
                Some((if **b { "all" } else { "exists" }, &args[1]))
            }
            (CelExpr::Literal(LiteralValue::Int(_)), Some((f, args))) if f == op::CONDITIONAL && args.len() == 3 => {
                Some(("exists_one", &args[0]))
            }
            (CelExpr::List(l), Some((f, args))) if l.elements.is_empty() && f == op::ADD && args.len() == 2 => {
                match &args[1].expr {
                    CelExpr::List(one) if one.elements.len() == 1 => Some(("map", &one.elements[0])),
                    _ => None,
                }
            }
            (CelExpr::List(l), Some((f, args))) if l.elements.is_empty() && f == op::CONDITIONAL && args.len() == 3 => {
                Some(("filter", &args[0]))
            }
            _ => None,
        };
        let Some((which, body)) = shape else {
            return Err(err("only exists, all, exists_one, map and filter may iterate".into()));
        };
        self.locals.push((c.iter_var.clone(), (*elem).clone()));
        let body = self.check(body);
        self.locals.pop();
        let body = body?;
        fn b(e: Expr) -> Box<Expr> {
            Box::new(e)
        }
        match which {
            "map" => Ok(typed(Ty::List(Box::new(body.ty.clone())), Kind::Map(b(list), b(body)))),
            _ if body.ty != Ty::Bool => Err(err(format!("{which} needs a bool condition, found {}", body.ty))),
            "filter" => Ok(typed(list.ty.clone(), Kind::Filter(b(list), b(body)))),
            "all" => Ok(typed(Ty::Bool, Kind::Quantify(Quantifier::All, b(list), b(body)))),
            "exists" => Ok(typed(Ty::Bool, Kind::Quantify(Quantifier::Exists, b(list), b(body)))),
            _ => Ok(typed(Ty::Bool, Kind::Quantify(Quantifier::ExistsOne, b(list), b(body)))),
        }
    }
}

fn typed(ty: Ty, kind: Kind) -> Expr {
    Expr { ty, kind }
}

/// `_>=_` → `>=`, for messages.
fn pretty(name: &str) -> String {
    let bare = name
        .trim_start_matches('_')
        .trim_end_matches('_')
        .trim_start_matches('@');
    match name {
        op::NEGATE => "unary -".into(),
        op::LOGICAL_NOT => "!".into(),
        op::CONDITIONAL => "?:".into(),
        _ if bare.len() < name.len() => format!("'{bare}'"),
        _ => format!("{name}()"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<Ty, String> {
        let program = cel::Program::compile(src).map_err(|e| e.to_string())?;
        let mut scope = Scope::new(vec![
            ("age", Slot::Input(0), Ty::Int),
            ("salary", Slot::Input(1), Ty::Double),
            ("birth", Slot::Input(2), Ty::Date),
            ("kids", Slot::Input(3), Ty::List(Box::new(Ty::Int))),
            ("name", Slot::Input(4), Ty::String),
            (
                "members",
                Slot::Input(5),
                Ty::List(Box::new(Ty::Record(Arc::new(vec![("salary".into(), Ty::Double)])))),
            ),
            ("today", Slot::Today, Ty::Date),
        ]);
        scope.check(program.expression()).map(|e| e.ty).map_err(|e| e.message)
    }

    #[test]
    fn well_typed_clauses_get_their_type() {
        assert_eq!(check("age >= 18 && salary == 0.0"), Ok(Ty::Bool));
        assert_eq!(check("salary > 0"), Ok(Ty::Bool), "numeric comparisons may mix");
        assert_eq!(check("years_between(birth, today)"), Ok(Ty::Int));
        assert_eq!(check("kids.exists(k, k < 6)"), Ok(Ty::Bool));
        assert_eq!(check("sum(members.map(m, m.salary))"), Ok(Ty::Double));
        assert_eq!(check("kids.filter(k, k < 8).size()"), Ok(Ty::Int));
        assert_eq!(check("sum(kids)"), Ok(Ty::Double));
        assert_eq!(check("name in ['a', 'b'] ? 1.0 : 2.0"), Ok(Ty::Double));
        assert_eq!(check("birth < date('2000-01-01')"), Ok(Ty::Bool));
    }

    #[test]
    fn ill_typed_clauses_are_refused_with_a_reason() {
        let e = check("age + salary").unwrap_err();
        assert!(
            e.contains("cannot apply '+' to int and double") && e.contains("double(...)"),
            "{e}"
        );
        assert!(check("agee > 3")
            .unwrap_err()
            .contains("unknown name 'agee'; this clause may use: age"));
        assert!(check("age && true").unwrap_err().contains("needs bool, found int"));
        assert!(check("name > 3")
            .unwrap_err()
            .contains("cannot compare string with int"));
        assert!(check("age > 3 ? 1 : 2.0").unwrap_err().contains("branches"));
        assert!(check("members.exists(m, m.wage > 0.0)")
            .unwrap_err()
            .contains("has no field 'wage'"));
        assert!(check("matches(name, 'x')").unwrap_err().contains("unknown function"));
        assert!(check("kids.exists(age, age > 1)").unwrap_err().contains("hides"));
        assert!(check("has(members.salary)").unwrap_err().contains("has()"));
        assert!(check("1u > 0").unwrap_err().contains("unsigned"));
    }
}
