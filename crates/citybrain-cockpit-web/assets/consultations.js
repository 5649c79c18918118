// Public consultations on draft policies (征求意见), on the appeals page:
// anyone reads the drafts, the comments and the department's answers;
// signed-in citizens and enterprises comment (on the whole draft or one
// article) and support others' comments; the consulting department's
// officers answer each comment with whether it was adopted, and conclude
// once the period is over. Uses api(), el(), fill(), when() and problem()
// of appeals.js and dom.js.
'use strict';

const STAGE = { upcoming: '未开始 upcoming', open: '征求中 open', closed: '已截止 closed', concluded: '已反馈 concluded' };
const STAGE_BADGE = { upcoming: 'waiting', open: 'running', closed: 'in_review', concluded: 'completed' };
const ADOPTION = { adopted: '采纳 adopted', partly_adopted: '部分采纳 partly adopted', not_adopted: '未采纳 not adopted', noted: '已说明 noted' };
const stageBadge = (s) => el('span', { class: `badge ${STAGE_BADGE[s] || s}`, 'data-stage': s }, STAGE[s] || s);

function commentItem(c, consultation, me, refresh) {
  const out = el('div', {});
  const act = (body) => async () => {
    try { await api('POST', `/consultations/${encodeURIComponent(consultation.id)}/comments/${c.seq}/actions`, body); await refresh(); } catch (e) { problem(out, e); }
  };
  const signedIn = me && (me.kind === 'citizen' || me.kind === 'enterprise');
  const staff = me && (me.kind === 'officer' || me.kind === 'administrator');
  const answerText = el('input', { type: 'text', placeholder: '答复 Answer', 'data-testid': 'comment-answer-text' });
  const adoption = el('select', { 'data-testid': 'comment-adoption' }, Object.entries(ADOPTION).map(([k, v]) => el('option', { value: k }, v)));
  return el('div', { class: 'item comment', 'data-seq': c.seq },
    el('div', { class: 'row' }, el('span', { class: 'grow' }, c.text, el('br'),
      el('span', { class: 'muted' }, `#${c.seq}`, c.section ? ` · ${c.section}` : '', ' · ', c.authorKind === 'enterprise' ? '企业 enterprise' : '市民 citizen',
        ' · ', when(c.at), ` · 👍 ${c.supports}`)),
      signedIn && consultation.stage === 'open' ? el('button', { class: 'secondary', onclick: act({ action: 'support' }) }, '支持 Support') : null),
    c.answer ? el('p', { class: 'notice', 'data-adoption': c.answer.adoption }, ADOPTION[c.answer.adoption] || c.answer.adoption, ' — ', c.answer.text) : null,
    staff && consultation.stage !== 'concluded' ? el('div', { class: 'row' }, answerText, adoption,
      el('button', { 'data-testid': 'comment-answer', onclick: () => act({ action: 'answer', text: answerText.value, adoption: adoption.value })() }, '答复 Answer')) : null,
    out);
}

async function consultationDetail(box, id, me) {
  const refresh = () => consultationDetail(box, id, me);
  const [c, list] = await Promise.all([
    api('GET', `/consultations/${encodeURIComponent(id)}`),
    api('GET', `/consultations/${encodeURIComponent(id)}/comments?limit=200`),
  ]);
  const out = el('div', {});
  const signedIn = me && (me.kind === 'citizen' || me.kind === 'enterprise');
  const staff = me && (me.kind === 'officer' || me.kind === 'administrator');
  const text = el('textarea', { rows: 3, maxlength: 2000, style: 'width:100%', 'data-testid': 'comment-text' });
  const on = el('select', { 'data-testid': 'comment-section' }, el('option', { value: '' }, '整体 The whole draft'),
    c.sections.map((s) => el('option', { value: s.id }, s.title)));
  const outcome = el('textarea', { rows: 3, style: 'width:100%', placeholder: '采纳情况与修改 What changed', 'data-testid': 'conclusion-text' });
  const t = c.tally;
  fill(box,
    el('div', { class: 'row' }, el('h3', { class: 'grow' }, c.title), stageBadge(c.stage)),
    el('p', {}, c.summary),
    el('p', { class: 'muted' }, c.department, c.policy ? ` · 政策 policy ${c.policy}` : '', ' · ', when(c.opens), ' – ', when(c.closes)),
    c.sections.map((s) => el('details', { class: 'draft-section', 'data-section': s.id }, el('summary', {}, s.title), el('p', {}, s.text))),
    c.conclusion ? el('div', { class: 'notice', 'data-testid': 'conclusion' }, el('b', {}, '征求意见采纳情况 Outcome: '), c.conclusion.outcome,
      el('p', { class: 'muted' }, `${c.conclusion.tally.comments} 条意见 comments · 采纳 ${c.conclusion.tally.adopted} · 部分采纳 ${c.conclusion.tally.partly_adopted} · 未采纳 ${c.conclusion.tally.not_adopted} · 说明 ${c.conclusion.tally.noted}`)) : null,
    el('h3', {}, `意见 Comments (${list.total})`, t.unanswered ? el('span', { class: 'muted' }, ` · ${t.unanswered} 待答复 awaiting an answer`) : null),
    list.comments.length ? list.comments.map((x) => commentItem(x, c, me, refresh)) : el('p', { class: 'muted' }, '—'),
    c.stage === 'open' && signedIn ? el('div', {}, el('label', {}, '针对 On ', on), el('label', {}, '我的意见 My comment ', text),
      el('button', { 'data-testid': 'comment-submit', onclick: async () => {
        try {
          const body = { text: text.value };
          if (on.value) body.section = on.value;
          await api('POST', `/consultations/${encodeURIComponent(id)}/comments`, body);
          await refresh();
        } catch (e) { problem(out, e); }
      } }, '提交意见 Comment')) : null,
    c.stage === 'open' && !signedIn && !staff ? el('p', { class: 'muted' }, '登录后可发表意见 Sign in (/portal) to comment') : null,
    c.stage === 'closed' && staff ? el('div', {}, outcome, el('button', { 'data-testid': 'conclude', onclick: async () => {
      try { await api('POST', `/consultations/${encodeURIComponent(id)}/conclude`, { outcome: outcome.value }); await refresh(); } catch (e) { problem(out, e); }
    } }, '发布采纳情况 Conclude')) : null,
    out);
}

async function consultations(box, me) {
  const list = await api('GET', '/consultations?limit=50');
  const detail = el('div', { 'data-testid': 'consultation-detail' });
  fill(box, el('h2', {}, `意见征集 Public consultations (${list.total})`),
    list.consultations.length ? null : el('p', { class: 'muted' }, '—'),
    list.consultations.map((c) => el('div', { class: 'item consultation', 'data-id': c.id },
      el('div', { class: 'row' }, el('span', { class: 'grow' }, el('b', {}, c.title), el('br'),
        el('span', { class: 'muted' }, c.department, ' · 截止 closes ', when(c.closes), ` · ${c.comments} 条意见 comments`)), stageBadge(c.stage),
      el('button', { class: 'secondary', 'data-testid': 'consultation-open', onclick: async () => {
        try { await consultationDetail(detail, c.id, me); } catch (e) { problem(detail, e); }
      } }, '阅读 Read')))),
    detail);
}
