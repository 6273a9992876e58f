// Repositories: the circuit breaker of each, open ones first.

import { get } from "./api.js";
import { badge, h, section, table, time } from "./dom.js";

export const title = "Repositories";

export function affects(event) {
  return event.aggregate.kind === "repo";
}

export async function render() {
  const repos = await get("/repositories");
  repos.sort((a, b) => (a.circuit === b.circuit ? 0 : a.circuit === "open" ? -1 : 1));
  const rows = repos.map((r) => [
    h("code", {}, r.id),
    r.circuit === "open" ? badge("open", "bad") : badge("closed", "good"),
    r.failures,
    time(r.openUntil),
    time(r.changedAt),
  ]);
  return h(
    "div",
    {},
    h("h1", {}, "Repositories"),
    h("p", { class: "muted" }, "An open circuit holds the repository's tasks until a probe succeeds."),
    section("Circuits", table("Repository circuits", ["Repository", "Circuit", "Failures in a row", "Open until", "Changed"], rows, "No repository has been used yet.")),
  );
}
