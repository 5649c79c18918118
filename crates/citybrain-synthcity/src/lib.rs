//! A synthetic city for the government services: people in households and
//! enterprises, drawn from the distributions in `sources.md` (beside this
//! crate) with a seeded ChaCha generator, so a seed always gives the same
//! city on every machine.
//!
//! The city comes as columns ([`People`], [`Enterprises`]: what batch
//! matching and the benchmarks read) and as NGSI-LD entities
//! ([`City::person_entity`] and friends: what the demo loads into the hub).
//! Households are contiguous: the members of household `h` are the people
//! `household_start[h]..household_start[h + 1]`.

use chrono::{Datelike, Duration, NaiveDate};
use rand::distr::{weighted::WeightedIndex, Distribution};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::LogNormal;
use serde_json::{json, Value};

/// The districts of the synthetic city (Shenzhen's nine districts and the
/// Dapeng New Area; the weights are not their populations, see sources.md).
pub const DISTRICTS: &[&str] = &[
    "Futian",
    "Luohu",
    "Nanshan",
    "Yantian",
    "Baoan",
    "Longgang",
    "Longhua",
    "Pingshan",
    "Guangming",
    "Dapeng",
];

pub const INDUSTRIES: &[(&str, u32)] = &[
    ("wholesale-retail", 30),
    ("manufacturing", 15),
    ("it-services", 12),
    ("catering", 10),
    ("business-services", 10),
    ("construction", 6),
    ("logistics", 6),
    ("culture-sports", 4),
    ("finance", 2),
    ("other", 5),
];

pub const EDUCATION: &[&str] = &["secondary", "bachelor", "master", "doctorate"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Adult,
    Child,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Adult => "adult",
            Role::Child => "child",
        }
    }
}

/// How big a city, which seed, and the day it is drawn for.
#[derive(Debug, Clone, Copy)]
pub struct CityConfig {
    /// At least this many people (the last household is completed).
    pub people: usize,
    pub enterprises: usize,
    pub seed: u64,
    pub as_of: NaiveDate,
}

impl Default for CityConfig {
    fn default() -> Self {
        CityConfig {
            people: 100_000,
            enterprises: 20_000,
            seed: 1,
            as_of: NaiveDate::from_ymd_opt(2026, 12, 1).expect("a date"),
        }
    }
}

/// People, one entry per person in each column.
#[derive(Debug, Clone, Default)]
pub struct People {
    pub birth: Vec<NaiveDate>,
    /// Monthly salary in yuan (0 for children, the retired and those out of work).
    pub salary: Vec<f64>,
    pub role: Vec<Role>,
    pub household: Vec<u32>,
    /// Index into [`EDUCATION`]; children have 0.
    pub education: Vec<u8>,
    /// When the highest degree was awarded (adults with a degree).
    pub graduated: Vec<Option<NaiveDate>>,
    /// Holds the city's household registration (hukou).
    pub registered: Vec<bool>,
    /// Has a negative entry in the social credit record (the risk gate).
    pub credit_flag: Vec<bool>,
    /// Pays into the city's social insurance.
    pub insured: Vec<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct Households {
    /// Members of household `h`: `start[h]..start[h + 1]`; one more entry than households.
    pub start: Vec<u32>,
    pub district: Vec<u8>,
    /// Monthly rent in yuan; 0 for owners.
    pub rent: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Enterprises {
    /// Index into [`INDUSTRIES`].
    pub industry: Vec<u8>,
    pub employees: Vec<i64>,
    /// Yuan per year.
    pub revenue: Vec<f64>,
    pub district: Vec<u8>,
    pub lon: Vec<f64>,
    pub lat: Vec<f64>,
    /// Owes tax past its due date.
    pub tax_arrears: Vec<bool>,
    pub founded: Vec<NaiveDate>,
    pub high_tech: Vec<bool>,
    /// Employees for whom it pays social insurance.
    pub insured_employees: Vec<i64>,
    /// Rented floor space, m².
    pub rented_area: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct City {
    pub config: CityConfig,
    pub people: People,
    pub households: Households,
    pub enterprises: Enterprises,
}

impl Enterprises {
    pub fn len(&self) -> usize {
        self.industry.len()
    }
    pub fn is_empty(&self) -> bool {
        self.industry.is_empty()
    }
    /// micro, small, medium or large, by employees (the bands of sources.md).
    pub fn size_class(&self, i: usize) -> &'static str {
        size_class(self.employees[i])
    }
}

pub fn size_class(employees: i64) -> &'static str {
    match employees {
        ..=9 => "micro",
        10..=99 => "small",
        100..=999 => "medium",
        _ => "large",
    }
}

fn years_before(d: NaiveDate, years: f64) -> NaiveDate {
    d - Duration::days((years * 365.2425) as i64)
}

impl City {
    /// Draws the city for `config`.
    pub fn generate(config: CityConfig) -> City {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let as_of = config.as_of;
        let mut people = People::default();
        let mut households = Households {
            start: vec![0],
            ..Households::default()
        };
        let size = WeightedIndex::new([20u32, 30, 27, 14, 9]).expect("weights");
        let district_w = WeightedIndex::new([12u32, 9, 13, 2, 16, 15, 13, 4, 5, 1]).expect("weights");
        let education_w = WeightedIndex::new([45u32, 35, 15, 5]).expect("weights");
        let salary = LogNormal::new(9000f64.ln(), 0.6).expect("lognormal");
        let rent = LogNormal::new(3500f64.ln(), 0.5).expect("lognormal");
        while people.birth.len() < config.people {
            let h = (households.start.len() - 1) as u32;
            let n = size.sample(&mut rng) + 1;
            // Adults first; one adult alone, or two; households of four or
            // more sometimes keep a grandparent.
            let adults = match n {
                1 => 1,
                2 => {
                    if rng.random_bool(0.8) {
                        2
                    } else {
                        1
                    }
                }
                _ => {
                    if rng.random_bool(0.15) {
                        1
                    } else {
                        2
                    }
                }
            };
            let elder = n >= 4 && rng.random_bool(0.3);
            let children = n - adults - usize::from(elder);
            let parent_age: f64 = if children > 0 {
                rng.random_range(24.0..50.0)
            } else {
                rng.random_range(20.0..64.0)
            };
            for k in 0..n {
                let (role, age) = if k < adults {
                    (Role::Adult, (parent_age + rng.random_range(-3.0..3.0)).max(18.5))
                } else if elder && k == adults {
                    (Role::Adult, rng.random_range(60.0..90.0))
                } else {
                    (Role::Child, rng.random_range(0.0..(parent_age - 18.0).clamp(0.5, 17.9)))
                };
                let birth = years_before(as_of, age);
                let working = role == Role::Adult && age < 60.0 && rng.random_bool(0.8);
                let pay = if working { salary.sample(&mut rng).round() } else { 0.0 };
                let (education, graduated) = if role == Role::Adult {
                    let e = education_w.sample(&mut rng);
                    let grad_age = [0.0, 22.0, 25.0, 29.0][e];
                    let g = (e > 0 && age > grad_age).then(|| {
                        let d = birth + Duration::days((grad_age * 365.2425) as i64);
                        NaiveDate::from_ymd_opt(d.year(), 7, 1).unwrap_or(d)
                    });
                    (e as u8, g.filter(|g| *g <= as_of))
                } else {
                    (0, None)
                };
                people.birth.push(birth);
                people.salary.push(pay);
                people.role.push(role);
                people.household.push(h);
                people.education.push(education);
                people.graduated.push(graduated);
                people.registered.push(rng.random_bool(0.35));
                people.credit_flag.push(role == Role::Adult && rng.random_bool(0.03));
                people.insured.push(working && rng.random_bool(0.9));
            }
            households.start.push(people.birth.len() as u32);
            households.district.push(district_w.sample(&mut rng) as u8);
            households.rent.push(if rng.random_bool(0.6) {
                rent.sample(&mut rng).round()
            } else {
                0.0
            });
        }

        let mut ent = Enterprises::default();
        let industry_w = WeightedIndex::new(INDUSTRIES.iter().map(|(_, w)| *w)).expect("weights");
        let size_w = WeightedIndex::new([80u32, 15, 4, 1]).expect("weights");
        let per_employee = LogNormal::new(400_000f64.ln(), 0.7).expect("lognormal");
        let area = LogNormal::new(10f64.ln(), 0.5).expect("lognormal");
        let epoch = NaiveDate::from_ymd_opt(1990, 1, 1).expect("a date");
        let span = (as_of - epoch).num_days().max(1);
        for _ in 0..config.enterprises {
            let industry = industry_w.sample(&mut rng);
            let employees: i64 = match size_w.sample(&mut rng) {
                0 => rng.random_range(1..=9),
                1 => rng.random_range(10..=99),
                2 => rng.random_range(100..=999),
                _ => rng.random_range(1000..=5000),
            };
            let tech_share = match INDUSTRIES[industry].0 {
                "it-services" => 0.35,
                "manufacturing" => 0.2,
                _ => 0.02,
            };
            ent.industry.push(industry as u8);
            ent.employees.push(employees);
            ent.revenue
                .push((per_employee.sample(&mut rng) * employees as f64).round());
            let d = district_w.sample(&mut rng);
            ent.district.push(d as u8);
            ent.lon.push(rng.random_range(113.75..114.60));
            ent.lat.push(rng.random_range(22.45..22.85));
            ent.tax_arrears.push(rng.random_bool(0.05));
            ent.founded.push(epoch + Duration::days(rng.random_range(0..span)));
            ent.high_tech.push(rng.random_bool(tech_share));
            ent.insured_employees
                .push(((employees as f64) * rng.random_range(0.6..1.0)).round() as i64);
            ent.rented_area.push((employees as f64 * area.sample(&mut rng)).round());
        }
        City {
            config,
            people,
            households,
            enterprises: ent,
        }
    }

    pub fn person_id(i: usize) -> String {
        format!("urn:ngsi-ld:Person:synth-{i}")
    }
    pub fn household_id(h: usize) -> String {
        format!("urn:ngsi-ld:Household:synth-{h}")
    }
    pub fn enterprise_id(e: usize) -> String {
        format!("urn:ngsi-ld:Organization:synth-{e}")
    }

    /// Person `i` as a normalized NGSI-LD entity.
    pub fn person_entity(&self, i: usize) -> Value {
        let p = &self.people;
        let mut e = json!({
            "id": City::person_id(i),
            "type": "Person",
            "birthDate": prop(json!(p.birth[i].to_string())),
            "monthlySalary": prop(json!(p.salary[i])),
            "householdRole": prop(json!(p.role[i].as_str())),
            "household": {"type": "Relationship", "object": City::household_id(p.household[i] as usize)},
            "registeredResident": prop(json!(p.registered[i])),
            "creditFlag": prop(json!(p.credit_flag[i])),
            "socialInsurance": prop(json!(p.insured[i])),
            "district": prop(json!(DISTRICTS[self.households.district[p.household[i] as usize] as usize])),
        });
        if p.role[i] == Role::Adult {
            e["educationLevel"] = prop(json!(EDUCATION[p.education[i] as usize]));
        }
        if let Some(g) = p.graduated[i] {
            e["graduationDate"] = prop(json!(g.to_string()));
        }
        e
    }

    pub fn household_entity(&self, h: usize) -> Value {
        let hh = &self.households;
        json!({
            "id": City::household_id(h),
            "type": "Household",
            "district": prop(json!(DISTRICTS[hh.district[h] as usize])),
            "monthlyRent": prop(json!(hh.rent[h])),
            "tenure": prop(json!(if hh.rent[h] > 0.0 { "rented" } else { "owned" })),
            "members": prop(json!(hh.start[h + 1] - hh.start[h])),
        })
    }

    pub fn enterprise_entity(&self, e: usize) -> Value {
        let x = &self.enterprises;
        json!({
            "id": City::enterprise_id(e),
            "type": "Organization",
            "name": prop(json!(format!("Synthetic enterprise {e}"))),
            "industry": prop(json!(INDUSTRIES[x.industry[e] as usize].0)),
            "sizeClass": prop(json!(x.size_class(e))),
            "employees": prop(json!(x.employees[e])),
            "annualRevenue": prop(json!(x.revenue[e])),
            "district": prop(json!(DISTRICTS[x.district[e] as usize])),
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round6(x.lon[e]), round6(x.lat[e])]}},
            "taxArrears": prop(json!(x.tax_arrears[e])),
            "foundingDate": prop(json!(x.founded[e].to_string())),
            "highTech": prop(json!(x.high_tech[e])),
            "insuredEmployees": prop(json!(x.insured_employees[e])),
            "rentedArea": prop(json!(x.rented_area[e])),
        })
    }

    pub fn households_len(&self) -> usize {
        self.households.start.len() - 1
    }
}

fn prop(v: Value) -> Value {
    json!({"type": "Property", "value": v})
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> City {
        City::generate(CityConfig {
            people: 5_000,
            enterprises: 2_000,
            seed,
            ..CityConfig::default()
        })
    }

    #[test]
    fn a_seed_gives_the_same_city_and_another_seed_another() {
        let (a, b, c) = (small(7), small(7), small(8));
        assert_eq!(a.people.birth, b.people.birth);
        assert_eq!(a.enterprises.revenue, b.enterprises.revenue);
        assert_ne!(a.people.birth, c.people.birth);
    }

    #[test]
    fn households_hold_adults_first_and_children_younger_than_a_parent() {
        let city = small(3);
        assert!(city.people.birth.len() >= 5_000);
        let hh = &city.households;
        for h in 0..city.households_len() {
            let members = hh.start[h] as usize..hh.start[h + 1] as usize;
            assert!((1..=5).contains(&members.len()));
            assert_eq!(
                city.people.role[members.start],
                Role::Adult,
                "household {h} starts with an adult"
            );
            let oldest_parent = city.people.birth[members.start];
            for i in members {
                assert_eq!(city.people.household[i] as usize, h);
                if city.people.role[i] == Role::Child {
                    assert!(
                        city.people.birth[i] > oldest_parent,
                        "a child born after the first parent"
                    );
                    assert_eq!(city.people.salary[i], 0.0);
                    assert!(city.people.birth[i] > years_before(city.config.as_of, 18.0));
                }
            }
        }
        let mean = city.people.birth.len() as f64 / city.households_len() as f64;
        assert!((2.4..2.85).contains(&mean), "mean household size {mean}");
    }

    #[test]
    fn enterprises_fall_in_their_size_bands_and_the_city() {
        let city = small(5);
        let e = &city.enterprises;
        let micro = (0..e.len()).filter(|i| e.size_class(*i) == "micro").count() as f64 / e.len() as f64;
        assert!((0.75..0.85).contains(&micro), "micro share {micro}");
        for i in 0..e.len() {
            assert!(e.insured_employees[i] <= e.employees[i]);
            assert!(e.revenue[i] > 0.0 && (113.75..114.6).contains(&e.lon[i]));
            assert!(e.founded[i] <= city.config.as_of);
        }
        let ent = city.enterprise_entity(0);
        assert_eq!(ent["type"], "Organization");
        assert_eq!(ent["location"]["value"]["type"], "Point");
        let person = city.person_entity(0);
        assert_eq!(person["household"]["object"], City::household_id(0));
    }
}
