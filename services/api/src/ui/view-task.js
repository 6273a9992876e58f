// One task: its state and its event timeline from the log, oldest first.

import { ApiError, frames, get } from "./api.js";
import { badge, bytes, h, link, section, short, span, when } from "./dom.js";

/** The task whose progress stream is open, its controller, and the latest update. */
let watching = null;
const latest = new Map();

export const title = "Task";

export function affects(event, id) {
  return event.aggregate.kind === "task" && event.aggregate.id === id;
}

export async function render(id) {
  const task = await get(`/tasks/${id}`);
  // Names, as a person knows them; an agent or policy gone since is said to be gone.
  const [agent, policy] = await Promise.all([
    get(`/agents/${task.agent}`).catch(gone),
    get(`/policies/${task.policy}`).catch(gone),
  ]);
  const agentName = agent?.name || short(task.agent);
  const events = [...task.events].sort((a, b) => a.seq - b.seq);
  const onAgent = ["dispatched", "acknowledged", "running"].includes(task.status);
  if (onAgent) watch(task.id);
  return h(
    "div",
    { class: "task", "data-task": task.id },
    h("p", { class: "crumbs" }, link("#/", "Overview"), " › ", link(`#/agents/${task.agent}`, agentName), " › task"),
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
        h("dt", {}, "Policy"),
        h("dd", { class: "policy" }, policyCell(task, policy)),
        h("dt", {}, "Agent"),
        h("dd", { class: "agent" }, link(`#/agents/${task.agent}`, agentName), agentNote(agent)),
        h("dt", {}, "Fires at"),
        h("dd", {}, when(task.fireAt)),
        h("dt", {}, "Retry due"),
        h("dd", {}, when(task.retryDueAt)),
        h("dt", {}, "Last error"),
        h("dd", {}, task.lastError ?? "—"),
      ),
    ),
    onAgent ? progressPanel(task.id) : null,
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

/** `null` for a 404 (it is gone); any other error is shown as the page's error. */
function gone(error) {
  if (error instanceof ApiError && error.status === 404) return null;
  throw error;
}

/** The policy by name, linked to the policies page; a deleted one said so. */
function policyCell(task, policy) {
  if (!policy) return [short(task.policy), h("span", { class: "muted" }, " (not known)")];
  if (policy.deleted) return [policy.spec.name, h("span", { class: "muted" }, " (deleted)")];
  return link(`#/policies`, policy.spec.name);
}

/** What the agent's name alone does not say: decommissioned, or not known at all. */
function agentNote(agent) {
  if (!agent) return h("span", { class: "muted" }, " (not known)");
  return agent.decommissioned ? h("span", { class: "muted" }, " (decommissioned)") : null;
}

/** The progress panel: restic's latest status for the running attempt. */
function progressPanel(id) {
  const panel = section(
    "Progress",
    h("progress", { max: 100, "aria-label": "Share of the run done" }),
    h("p", { class: "progress-words", "aria-live": "polite" }, "Waiting for restic's first status…"),
  );
  panel.dataset.progressTask = id;
  const seen = latest.get(id);
  if (seen) fill(panel, seen);
  return panel;
}

function fill(panel, p) {
  const bar = panel.querySelector("progress");
  bar.value = p.percent;
  bar.textContent = `${p.percent}%`;
  panel.dataset.percent = String(p.percent);
  // When restic printed it and when this page showed it (the latency tests measure).
  panel.dataset.at = p.at;
  panel.dataset.shownAt = new Date().toISOString();
  const parts = [
    `${p.percent.toFixed(1)} %`,
    `${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)}`,
    `${p.filesDone} of ${p.filesTotal} files`,
    `${span(p.secondsElapsed * 1000)} elapsed`,
  ];
  if (p.secondsRemaining !== null && p.secondsRemaining !== undefined) parts.push(`about ${span(p.secondsRemaining * 1000)} left`);
  if (p.errors > 0) parts.push(`${p.errors} errors`);
  panel.querySelector(".progress-words").textContent = parts.join(" · ");
}

/**
 * Follows the task's progress stream while its page is shown; each update fills the panel
 * in place (the page is re-rendered on events, the stream stays open).
 */
function watch(id) {
  if (watching && watching.id === id) return;
  if (watching) watching.controller.abort();
  const controller = new AbortController();
  watching = { id, controller };
  const here = () => location.hash.endsWith(`/tasks/${id}`);
  frames(
    `/tasks/${id}/progress`,
    (frame) => {
      if (!here()) return controller.abort();
      if (frame.event !== "progress") return;
      const p = JSON.parse(frame.data);
      latest.set(id, p);
      const panel = document.querySelector(`[data-progress-task="${id}"]`);
      if (panel) fill(panel, p);
    },
    controller.signal,
  )
    .catch(() => {})
    .finally(() => {
      if (!watching || watching.controller !== controller) return;
      watching = null;
      // Closed while the page still shows the running task (the API restarted, the
      // network dropped): follow it again rather than leave the bar frozen.
      const shown = () => here() && document.querySelector(`[data-progress-task="${id}"]`);
      if (!controller.signal.aborted && shown()) setTimeout(() => shown() && watch(id), RECONNECT_MS);
    });
}

/** Wait before following a progress stream again that closed under a running task. */
const RECONNECT_MS = 2000;

function tone({ type, data }) {
  if (type === "task.succeeded") return "good";
  if (["task.failed", "task.exhausted", "task.lost"].includes(type)) return "bad";
  if (type === "task.retry_scheduled") return "warn";
  const failedStep = ["task.unlock_ran", "task.retention_applied"].includes(type);
  if (failedStep && data && data.outcome === "failed") return "warn";
  const hookFailed = data && !(data.outcome === "exited" && data.exitCode === 0);
  if (type === "task.hook_ran" && hookFailed) return "warn";
  return "";
}
