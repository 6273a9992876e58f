// Finished attempts: charts of bytes added and duration over time, what ended per UTC day
// (kept after the runs leave the read models), and the newest runs.

import { allAgents, allPolicies, get } from "./api.js";
import { bytes, h, section, span, table } from "./dom.js";
import { lineChart } from "./chart.js";
import { newestFirst, runTable } from "./view-agent.js";

export const title = "Runs";

export function affects(event) {
  return event.aggregate.kind === "task" && ["task.succeeded", "task.failed", "task.lost", "task.cancelled", "task.exhausted"].includes(event.type);
}

export async function render() {
  const [runs, days, summary, policies, agents] = await Promise.all([
    get(`/runs?limit=${SHOWN}`),
    get("/history?limit=31"),
    get("/summary"),
    allPolicies(),
    allAgents(),
  ]);
  const policyName = new Map(policies.map((p) => [p.id, p.spec.name]));
  const agentName = new Map(agents.map((a) => [a.id, a.name]));
  const ordered = newestFirst(runs);
  const oldestFirst = [...ordered].reverse();
  const added = oldestFirst
    .filter((r) => r.summary?.backup)
    .map((r) => ({ t: new Date(r.finishedAt), v: r.summary.backup.dataAddedBytes }));
  const durations = oldestFirst.map((r) => ({ t: new Date(r.finishedAt), v: r.durationMs }));
  return h(
    "div",
    {},
    h("h1", {}, "Runs"),
    h(
      "div",
      { class: "columns" },
      section("Bytes added per backup", lineChart("Bytes added per backup over time", added, bytes)),
      section("Duration per run", lineChart("Duration of each run over time", durations, span)),
    ),
    section("Per day (UTC), the last 31", dayTable(days)),
    section(
      runs.length < SHOWN ? "Every run kept" : `The newest ${SHOWN} runs`,
      h(
        "p",
        { class: "muted" },
        `Runs are kept for ${summary.historyDays} days; older ones remain in the totals per day.`,
      ),
      runTable(ordered, policyName, agentName),
    ),
  );
}

/** Runs the view asks for at most. */
const SHOWN = 500;

/** The tenant's days, newest first. */
function dayTable(days) {
  const rows = days.map((d) =>
    h(
      "tr",
      { "data-day": d.day },
      [d.day, d.runs, d.succeeded, d.failed, d.lost, d.cancelled, d.tasksExhausted, d.tasksSkipped, span(d.durationMs), bytes(d.dataAddedBytes)].map(
        (cell) => h("td", {}, cell),
      ),
    ),
  );
  const headers = ["Day", "Runs", "Succeeded", "Failed", "Lost", "Cancelled", "Given up", "Skipped", "Run time", "Added"];
  return table("What ended per UTC day, newest first", headers, rows, "Nothing has ended yet.");
}
