// Finished attempts: charts of bytes added and duration over time, and the table.

import { allAgents, allPolicies, get } from "./api.js";
import { bytes, h, section, span } from "./dom.js";
import { lineChart } from "./chart.js";
import { newestFirst, runTable } from "./view-agent.js";

export const title = "Runs";

export function affects(event) {
  return event.aggregate.kind === "task" && ["task.succeeded", "task.failed", "task.lost", "task.cancelled", "task.exhausted"].includes(event.type);
}

export async function render() {
  const [runs, policies, agents] = await Promise.all([get("/runs?limit=500"), allPolicies(), allAgents()]);
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
    section("Every run", runTable(ordered, policyName, agentName)),
  );
}
