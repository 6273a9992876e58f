// The fleet overview: counts, every agent with its state, load against its limit and
// backoff, and the last success of each policy on each agent (stale ones marked).

import { allAgents, get } from "./api.js";
import { badge, clock, h, link, section, table, time, when } from "./dom.js";

export const title = "Overview";
/** Shows "last seen": refreshed on a timer too (see app.js). */
export const showsHeartbeats = true;

export function affects(event) {
  return ["agent", "task", "policy", "repo", "assignment"].includes(event.aggregate.kind);
}

export async function render() {
  const [summary, agents, days] = await Promise.all([get("/summary"), allAgents(), get("/history?limit=1")]);
  const names = new Map(agents.map((a) => [a.id, a.name]));
  return h(
    "div",
    { class: "overview" },
    h("h1", {}, "Fleet overview"),
    counts(summary, givenUpToday(days)),
    section("Agents", agentTable(agents)),
    section("Last success per policy", freshness(summary.freshness, names)),
  );
}

/** Tasks given up today (UTC), from the tenant's newest day of history. */
function givenUpToday(days) {
  const today = new Date().toISOString().slice(0, 10);
  const day = days.find((d) => d.day === today);
  return day ? day.tasksExhausted : 0;
}

function counts(summary, givenUp) {
  const tasks = summary.tasks;
  const retrying = (tasks.failed || 0) + (tasks.retry_scheduled || 0) + (tasks.retry_due || 0);
  const card = (label, value, tone = "") =>
    h("div", { class: `card ${tone}`.trim() }, h("span", { class: "value" }, value), h("span", { class: "label" }, label));
  return h(
    "div",
    { class: "cards" },
    card("agents online", `${summary.agents.online} / ${summary.agents.total}`),
    card("saturated", summary.agents.saturated, summary.agents.saturated ? "warn" : ""),
    card("in backoff", summary.agents.inBackoff, summary.agents.inBackoff ? "warn" : ""),
    card("running tasks", (tasks.dispatched || 0) + (tasks.acknowledged || 0) + (tasks.running || 0)),
    card("failed, to be retried", retrying, retrying ? "warn" : ""),
    card("given up today (UTC)", givenUp, givenUp ? "bad" : ""),
    card("open circuits", summary.openCircuits, summary.openCircuits ? "bad" : ""),
    card("stale backups", summary.stale, summary.stale ? "bad" : ""),
  );
}

/** The bar of running tasks against the agent's limit. */
export function saturationBar(agent) {
  const limit = agent.settings.maxConcurrent;
  const running = agent.runningTasks;
  const bar = h(
    "div",
    {
      class: `bar${agent.saturated ? " full" : ""}`,
      role: "meter",
      "aria-valuemin": 0,
      "aria-valuemax": limit,
      "aria-valuenow": running,
      "aria-label": `${running} of ${limit} running`,
      "data-saturated": agent.saturated ? "true" : "false",
    },
    h("span", { class: "fill" }),
  );
  bar.firstChild.style.width = `${Math.min(100, (100 * running) / Math.max(limit, 1))}%`;
  const words = `${running} / ${limit}${agent.queueDepth ? `, ${agent.queueDepth} queued` : ""}`;
  return h(
    "div",
    { class: "load" },
    bar,
    h("span", {}, words),
    agent.saturated ? badge(`saturated: ${agent.saturation}`, "warn saturated") : null,
  );
}

/** "backoff until HH:MM", or nothing. */
export function backoffBadge(agent) {
  if (!agent.backoffUntil) return h("span", { class: "muted" }, "—");
  const b = badge(`backoff until ${clock(agent.backoffUntil)}`, "warn backoff");
  b.setAttribute("title", `${agent.pendingRetries} retry pending, the first at ${new Date(agent.backoffUntil).toString()}`);
  b.dataset.until = agent.backoffUntil;
  return b;
}

export function onlineBadge(agent) {
  if (agent.decommissioned) return badge("decommissioned", "muted");
  if (agent.online) return badge("online", "good");
  if (!agent.offlineSince) return badge("offline", "bad");
  return h("span", {}, badge("offline", "bad"), h("div", { class: "muted offline-since" }, `since ${when(agent.offlineSince)}`));
}

function agentTable(agents) {
  const rows = agents.map((agent) =>
    h(
      "tr",
      { "data-agent": agent.id },
      h("td", {}, link(`#/agents/${agent.id}`, agent.name || agent.id), h("div", { class: "muted" }, agent.hostname)),
      h("td", {}, onlineBadge(agent)),
      h("td", {}, saturationBar(agent)),
      h("td", {}, backoffBadge(agent)),
      h("td", {}, time(agent.lastSeen)),
    ),
  );
  return table("Agents and their load", ["Agent", "State", "Running / limit", "Backoff", "Last seen"], rows, "No agents yet.");
}

/** Overdue (the notifier found no success by its second fire), stale, or current. */
function freshnessBadge(pair) {
  if (pair.overdueSince) return badge(`overdue since ${when(pair.overdueSince)}`, "bad");
  return pair.stale ? badge("stale", "bad") : badge("current", "good");
}

function freshness(pairs, names) {
  const rows = pairs.map((pair) =>
    h(
      "tr",
      { class: pair.stale || pair.overdueSince ? "stale" : "" },
      h("td", {}, pair.policyName),
      h("td", {}, link(`#/agents/${pair.agent}`, names.get(pair.agent) || pair.agent)),
      h("td", {}, time(pair.lastSuccessAt)),
      h("td", {}, pair.snapshotId ? h("code", {}, pair.snapshotId.slice(0, 8)) : "—"),
      h("td", {}, freshnessBadge(pair)),
    ),
  );
  return table("Last success of each policy on each agent", ["Policy", "Agent", "Last success", "Snapshot", ""], rows, "No assigned policies.");
}
