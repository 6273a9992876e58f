// One agent: its settings, the tasks it holds or waits for, its recent runs and its backoff.

import { allPolicies, get } from "./api.js";
import { badge, bytes, h, link, section, short, span, table, time, when } from "./dom.js";
import { backoffBadge, onlineBadge, saturationBar } from "./view-overview.js";

export const title = "Agent";
/** Shows "last seen": refreshed on a timer too (see app.js). */
export const showsHeartbeats = true;

const OPEN = ["scheduled", "dispatched", "acknowledged", "running", "failed", "retry_scheduled", "retry_due"];

export function affects(event, id) {
  if (event.aggregate.kind === "agent") return event.aggregate.id === id;
  return ["task", "policy", "assignment"].includes(event.aggregate.kind);
}

export async function render(id) {
  const [agent, backoff, tasks, runs, policies] = await Promise.all([
    get(`/agents/${id}`),
    get(`/agents/${id}/backoff-status`),
    get(`/tasks?agent=${id}&limit=200`),
    get(`/runs?agent=${id}&limit=20`),
    allPolicies(),
  ]);
  const policyName = new Map(policies.map((p) => [p.id, p.spec.name]));
  return h(
    "div",
    { class: "agent", "data-agent": agent.id },
    h("p", { class: "crumbs" }, link("#/", "Overview"), " › agent"),
    h("h1", {}, agent.name || agent.id, " ", onlineBadge(agent)),
    h(
      "div",
      { class: "columns" },
      section("State", facts(agent)),
      section("Settings", settings(agent.settings)),
    ),
    section("Overdue policies", overduePanel(agent, policyName)),
    section("Backoff", backoffPanel(agent, backoff)),
    section("Current tasks", taskTable(tasks.filter((t) => OPEN.includes(t.status)), policyName)),
    section("Recent runs", runTable(newestFirst(runs), policyName)),
  );
}

function dl(pairs) {
  return h("dl", {}, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function facts(agent) {
  return dl([
    ["Id", h("code", {}, agent.id)],
    ["Hostname", agent.hostname],
    ["Load", saturationBar(agent)],
    ["Running by kind", `backup ${agent.runningByKind.backup}, check ${agent.runningByKind.check}, prune ${agent.runningByKind.prune}`],
    ["Queued", agent.queueDepth],
    ["Last seen", time(agent.lastSeen)],
    ...(agent.offlineSince ? [["Offline since", time(agent.offlineSince)]] : []),
    ["Registered", time(agent.registeredAt)],
    ["Versions", `agent ${agent.agentVersion ?? "?"}, restic ${agent.resticVersion ?? "?"}`],
  ]);
}

function settings(s) {
  const limit = (n) => (n === null || n === undefined ? "total only" : n);
  const io = s.ioClass === "idle" ? "idle" : `best effort, level ${s.ioClass.bestEffort.level}`;
  return dl([
    ["Tasks at once", s.maxConcurrent],
    ["Backups / checks / prunes at once", `${limit(s.perKind.backup)} / ${limit(s.perKind.check)} / ${limit(s.perKind.prune)}`],
    ["CPU quota", s.cpuQuotaPercent ? `${s.cpuQuotaPercent} % of a core` : "none"],
    ["Upload limit", s.uploadKibS ? `${s.uploadKibS} KiB/s` : "none"],
    ["Download limit", s.downloadKibS ? `${s.downloadKibS} KiB/s` : "none"],
    ["Nice", s.nice],
    ["I/O class", io],
  ]);
}

function overduePanel(agent, policyName) {
  if (agent.overdue.length === 0) return h("p", { class: "empty" }, "None: every policy assigned here succeeded within its period.");
  const rows = agent.overdue.map((o) => [policyName.get(o.policy) || short(o.policy), badge(`overdue since ${when(o.since)}`, "bad"), time(o.lastSuccess)]);
  return table("Policies overdue on this agent", ["Policy", "Overdue", "Last success"], rows);
}

function backoffPanel(agent, backoff) {
  if (!backoff.inBackoff) return h("p", { class: "empty" }, "Not in backoff: new work is dispatched.");
  const rows = backoff.retries.map((r) => [link(`#/tasks/${r.task}`, short(r.task)), time(r.dueAt)]);
  return h(
    "div",
    {},
    h("p", {}, backoffBadge(agent), ` New work waits until the earliest retry is due (${backoff.pendingRetries} pending).`),
    table("Retries pending", ["Task", "Due"], rows),
  );
}

export function taskTable(tasks, policyName) {
  const rows = tasks.map((t) => [
    link(`#/tasks/${t.id}`, short(t.id)),
    policyName.get(t.policy) || short(t.policy),
    t.kind ?? "—",
    badge(t.status.replace("_", " "), t.status === "retry_scheduled" ? "warn" : ""),
    t.attempt,
    t.retryDueAt ? when(t.retryDueAt) : when(t.runAt || t.fireAt),
    t.lastError ?? "—",
  ]);
  return table("Tasks", ["Task", "Policy", "Kind", "State", "Attempt", "Due / run at", "Last error"], rows, "No open tasks.");
}

export function runTable(runs, policyName, agentName = null) {
  const rows = runs.map((r) => {
    const cells = [
      time(r.finishedAt),
      link(`#/tasks/${r.task}`, short(r.task)),
      policyName.get(r.policy) || short(r.policy),
    ];
    if (agentName) cells.push(link(`#/agents/${r.agent}`, agentName.get(r.agent) || short(r.agent)));
    cells.push(
      r.kind,
      badge(r.outcome, r.outcome === "succeeded" ? "good" : "bad"),
      span(r.durationMs),
      bytes(r.summary?.backup?.dataAddedBytes),
      r.snapshotId ? h("code", {}, r.snapshotId.slice(0, 8)) : r.error ?? "—",
    );
    return cells;
  });
  const headers = ["Finished", "Task", "Policy"];
  if (agentName) headers.push("Agent");
  headers.push("Kind", "Outcome", "Duration", "Added", "Snapshot or error");
  return table("Finished attempts, newest first", headers, rows, "No runs yet.");
}

/** Runs sorted by when they finished, newest first. */
export function newestFirst(runs) {
  return [...runs].sort((a, b) => new Date(b.finishedAt) - new Date(a.finishedAt));
}
