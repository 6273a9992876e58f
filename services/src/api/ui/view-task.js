// One task: its state and its event timeline from the log, oldest first.

import { get } from "./api.js";
import { badge, h, link, section, short, when } from "./dom.js";

export const title = "Task";

export function affects(event, id) {
  return event.aggregate.kind === "task" && event.aggregate.id === id;
}

export async function render(id) {
  const task = await get(`/tasks/${id}`);
  const events = [...task.events].sort((a, b) => a.seq - b.seq);
  return h(
    "div",
    { class: "task", "data-task": task.id },
    h("p", { class: "crumbs" }, link("#/", "Overview"), " › ", link(`#/agents/${task.agent}`, "agent"), " › task"),
    h("h1", {}, "Task ", h("code", {}, task.id)),
    section(
      "State",
      h(
        "dl",
        {},
        h("dt", {}, "State"),
        h("dd", {}, badge(task.status.replace("_", " "), task.status === "retry_scheduled" ? "warn" : "")),
        h("dt", {}, "Kind"),
        h("dd", {}, task.kind ?? "—"),
        h("dt", {}, "Attempt"),
        h("dd", {}, task.attempt),
        h("dt", {}, "Agent"),
        h("dd", {}, link(`#/agents/${task.agent}`, short(task.agent))),
        h("dt", {}, "Fires at"),
        h("dd", {}, when(task.fireAt)),
        h("dt", {}, "Retry due"),
        h("dd", {}, when(task.retryDueAt)),
        h("dt", {}, "Last error"),
        h("dd", {}, task.lastError ?? "—"),
      ),
    ),
    section(
      "Timeline",
      h(
        "ol",
        { class: "timeline", "aria-label": "The task's events, oldest first" },
        events.map((e) =>
          h(
            "li",
            { "data-seq": e.seq, "data-type": e.type, class: `event ${tone(e)}`.trim() },
            h("time", { datetime: e.occurredAt }, when(e.occurredAt)),
            h("span", { class: "type" }, e.type),
            h("span", { class: "summary" }, e.summary),
            h("span", { class: "seq muted" }, `#${e.seq}`),
          ),
        ),
      ),
    ),
  );
}

function tone({ type, data }) {
  if (type === "task.succeeded") return "good";
  if (["task.failed", "task.exhausted", "task.lost"].includes(type)) return "bad";
  if (type === "task.retry_scheduled") return "warn";
  const failedStep = ["task.unlock_ran", "task.retention_applied"].includes(type);
  if (failedStep && data && data.outcome === "failed") return "warn";
  return "";
}
