// Snapshots: every repository's inventory, newest first; made outside the fleet marked.

import { get } from "./api.js";
import { badge, bytes, h, link, section, table, time } from "./dom.js";

export const title = "Snapshots";

export function affects(event) {
  return event.type === "repo.snapshots_changed";
}

export async function render() {
  const page = await get("/snapshots?limit=200");
  const rows = page.snapshots.map((s) => [
    link(`#/snapshots/${s.id}`, h("code", { title: s.id }, s.shortId)),
    time(s.time),
    s.host,
    h("span", { class: "paths" }, s.paths.join(", ") + (s.morePaths ? ` and ${s.morePaths} more` : "")),
    bytes(s.sizeBytes),
    s.external ? badge("external", "warn") : s.policyName ?? h("code", {}, s.policy ?? "—"),
    h("code", {}, s.repoUrl ?? s.repo),
  ]);
  return h(
    "div",
    {},
    h("h1", {}, "Snapshots"),
    h(
      "p",
      { class: "muted" },
      "What agents found in the repositories after each backup and prune, and on a refresh (fleet repo refresh). External: made outside the fleet (no policy tag of this tenant).",
    ),
    section(
      "Newest first",
      table("Snapshots", ["Snapshot", "Time", "Host", "Paths", "Size", "Policy", "Repository"], rows, "No snapshot listed yet."),
      page.nextCursor ? h("p", { class: "muted" }, "Showing the newest 200 (fleet snapshots lists them all).") : null,
    ),
  );
}
