// Policies: what each backs up, its schedule in words and its next fire times.

import { allAgents, allPolicies } from "./api.js";
import { badge, h, link, section, table, when } from "./dom.js";

export const title = "Policies";

export function affects(event) {
  return ["policy", "agent", "assignment"].includes(event.aggregate.kind);
}

export async function render() {
  const [policies, agents] = await Promise.all([allPolicies(), allAgents()]);
  const names = new Map(agents.map((a) => [a.id, a.name]));
  const rows = policies.map((p) => [
    h("strong", {}, p.spec.name),
    p.spec.kind,
    h("span", { class: "schedule" }, scheduleWords(p.spec.schedule)),
    h("code", {}, p.spec.repository.url),
    p.agents.length === 0 ? "none" : h("span", {}, p.agents.map((a, i) => [i ? ", " : "", link(`#/agents/${a}`, names.get(a) || a.slice(0, 8))])),
    state(p),
    p.nextFires.length === 0 ? "—" : h("ul", { class: "fires" }, p.nextFires.map((t) => h("li", {}, h("time", { datetime: t }, when(t))))),
  ]);
  return h(
    "div",
    {},
    h("h1", {}, "Policies"),
    section(
      "Every policy",
      table("Policies with their schedules", ["Name", "Kind", "Schedule", "Repository", "Agents", "State", `Next fires (${localZone()}, before jitter)`], rows, "No policies yet."),
    ),
  );
}

/** The browser's time zone, in which every time on the dashboard is shown. */
function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

/** Paused, overdue on some agents (the notifier's finding, until they catch up), or active. */
function state(p) {
  if (p.paused) return badge("paused", "warn");
  const n = p.overdue.length;
  if (n > 0) return badge(`overdue on ${n} of ${p.agents.length} ${p.agents.length === 1 ? "agent" : "agents"}`, "bad");
  return badge("active", "good");
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const pad = (n) => String(n).padStart(2, "0");

/** A schedule in words: "every day at 02:00 (Europe/Berlin)", "every 2 minutes". */
export function scheduleWords(schedule) {
  if (schedule.interval) return `every ${every(schedule.interval.everySecs)}`;
  const { expr, timezone } = schedule.cron;
  return `${cronWords(expr)} (${timezone})`;
}

function every(secs) {
  const units = [
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, name] of units) {
    if (secs % size === 0) {
      const n = secs / size;
      return n === 1 ? name : `${n} ${name}s`;
    }
  }
  return `${secs} seconds`;
}

/**
 * The common five-field forms in words; anything else as the expression itself. Five fields
 * are read as crontab(5) reads them (0 or 7 = Sunday), as the scheduler does; in six or
 * seven fields (the cron crate's syntax) days are numbered 1 = Sunday to 7 = Saturday.
 */
export function cronWords(expr) {
  let fields = expr.trim().split(/\s+/);
  const classic = fields.length === 5;
  if (!classic) {
    const seconds = fields[0] === "0" && (fields.length === 6 || (fields.length === 7 && fields[6] === "*"));
    if (!seconds || !/^(\*|[1-7](,[1-7])*)$/.test(fields[5])) return `cron ${expr}`;
    fields = fields.slice(1, 6);
  }
  const dayName = (d) => (classic ? DAYS[d % 7] : DAYS[(d + 6) % 7]);
  const [minute, hour, dom, month, dow] = fields;
  const number = (f) => /^\d+$/.test(f);
  const step = (f) => f.match(/^\*\/(\d+)$/);
  if (month !== "*") return `cron ${expr}`;
  if (number(minute) && number(hour)) {
    const at = `at ${pad(hour)}:${pad(minute)}`;
    if (dom === "*" && dow === "*") return `every day ${at}`;
    if (dom === "*" && /^[0-7](,[0-7])*$/.test(dow)) {
      const days = dow.split(",").map((d) => dayName(Number(d)));
      return `every ${days.join(" and ")} ${at}`;
    }
    if (dom === "*" && ((classic && dow === "1-5") || /^mon-fri$/i.test(dow))) return `every weekday ${at}`;
    if (number(dom) && dow === "*") return `on day ${dom} of every month ${at}`;
  }
  if (dom === "*" && dow === "*") {
    if (number(minute) && hour === "*") return `every hour at minute ${minute}`;
    if (number(minute) && step(hour)) return `every ${step(hour)[1]} hours at minute ${minute}`;
    if (step(minute) && hour === "*") return `every ${step(minute)[1]} minutes`;
    if (minute === "*" && hour === "*") return "every minute";
  }
  return `cron ${expr}`;
}
