// One snapshot: what the inventory knows, its files (listed by an agent on demand, never
// stored) and a restore form. The page is not redrawn by live events, so a form being
// filled in is never lost.

import { allAgents, allPolicies, get, post } from "./api.js";
import { badge, bytes, h, link, section, time } from "./dom.js";

export const title = "Snapshot";

export function affects() {
  return false;
}

/** The snapshot with this id, looked up page by page. */
async function find(id) {
  let cursor = null;
  for (let pages = 0; pages < 50; pages += 1) {
    const page = await get(`/snapshots?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const found = page.snapshots.find((s) => s.id === id);
    if (found) return found;
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  return null;
}

export async function render(id) {
  const [snapshot, agents, policies] = await Promise.all([find(id), allAgents(), allPolicies()]);
  if (!snapshot) {
    return h("div", {}, h("h1", {}, "Snapshot not found"), h("p", {}, link("#/snapshots", "Back to the snapshots")));
  }
  const usable = agents.filter((a) => !a.decommissioned);
  const sameRepo = policies.filter((p) => p.spec.repository.url === snapshot.repoUrl);
  const own = sameRepo.find((p) => p.id === snapshot.policy);
  const choices = own ? [own, ...sameRepo.filter((p) => p !== own)] : sameRepo;
  const agentPick = select(
    "snapshot-agent",
    usable.map((a) => [a.id, `${a.name}${a.online ? "" : " (offline)"}`]),
    (usable.find((a) => a.hostname === snapshot.host) ?? usable.find((a) => a.id === snapshot.addedBy?.agent))?.id,
  );
  const policyPick = select("snapshot-policy", choices.map((p) => [p.id, p.spec.name]), choices[0]?.id);
  const include = h("textarea", { id: "restore-include", rows: 3, placeholder: "/srv/data/report.txt (one path per line; empty: everything)" });
  const files = h("div", { class: "browser", "data-path": "/" });
  const result = h("p", { class: "restore-result", role: "status", "aria-live": "polite" });

  const browse = async (path, after = null) => {
    files.dataset.path = path;
    if (!after) files.replaceChildren(h("p", { class: "muted" }, `Listing ${path} on the agent…`));
    const query = new URLSearchParams({ policy: policyPick.value, agent: agentPick.value, path, limit: "200" });
    if (after) query.set("after", after);
    let page;
    try {
      page = await get(`/snapshots/${snapshot.id}/ls?${query}`);
    } catch (error) {
      files.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
      return;
    }
    const rows = page.entries.map((e) => entryRow(e, path, browse, include));
    if (!after) {
      files.replaceChildren(
        crumbs(path, browse),
        h("table", { class: "entries" }, h("caption", {}, `Contents of ${path}`), h("thead", {}, h("tr", {}, ["", "Name", "Size", "Modified"].map((n) => h("th", { scope: "col" }, n)))), h("tbody", {}, rows)),
      );
    } else {
      files.querySelector("tbody").append(...rows);
      files.querySelector(".more")?.remove();
    }
    if (page.next) files.append(h("button", { type: "button", class: "more" }, "More"));
    const more = files.querySelector(".more");
    if (more) more.addEventListener("click", () => browse(path, page.next));
  };

  const browseButton = h("button", { type: "button", id: "browse" }, "List files");
  browseButton.addEventListener("click", () => browse(files.dataset.path || "/"));

  const form = h(
    "form",
    { id: "restore-form", class: "restore" },
    h("label", { for: "restore-target" }, "Restore into (a directory on the agent)"),
    h("input", { id: "restore-target", name: "target", required: true, placeholder: "/var/restore" }),
    h("label", { for: "restore-include" }, "Only these paths"),
    include,
    h("label", { for: "restore-overwrite" }, "Files that exist in the target"),
    select("restore-overwrite", [["never", "leave them (never overwrite)"], ["ifChanged", "replace if changed"], ["always", "always replace"]], "never"),
    h("label", { class: "check" }, h("input", { type: "checkbox", id: "restore-dry-run" }), " Dry run: count, write nothing"),
    h("button", { type: "submit", id: "restore-submit" }, "Restore"),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      policy: policyPick.value,
      agent: agentPick.value,
      snapshot: snapshot.id,
      target: form.querySelector("#restore-target").value.trim(),
      include: include.value.split("\n").map((l) => l.trim()).filter(Boolean),
      dryRun: form.querySelector("#restore-dry-run").checked,
      overwrite: form.querySelector("#restore-overwrite").value,
    };
    result.className = "restore-result";
    result.textContent = "Asking…";
    try {
      const answer = await post("/restores", body);
      result.replaceChildren("Restore requested: ", link(`#/tasks/${answer.task}`, "follow the task"), ".");
      result.dataset.task = answer.task;
    } catch (error) {
      result.className = "restore-result error";
      const problems = (error.problems ?? []).map((p) => `${p.field}: ${p.message}`);
      result.textContent = [error.message, ...problems].join(" · ");
    }
  });

  return h(
    "div",
    { class: "snapshot", "data-snapshot": snapshot.id },
    h("p", { class: "crumbs" }, link("#/snapshots", "Snapshots"), " › ", snapshot.shortId),
    h("h1", {}, "Snapshot ", h("code", { title: snapshot.id }, snapshot.shortId)),
    section(
      "What the inventory knows",
      h(
        "dl",
        {},
        h("dt", {}, "Time"),
        h("dd", {}, time(snapshot.time)),
        h("dt", {}, "Host"),
        h("dd", {}, snapshot.host),
        h("dt", {}, "Paths"),
        h("dd", {}, snapshot.paths.join(", ") + (snapshot.morePaths ? ` and ${snapshot.morePaths} more` : "")),
        h("dt", {}, "Size"),
        h("dd", {}, bytes(snapshot.sizeBytes)),
        h("dt", {}, "Policy"),
        h("dd", {}, snapshot.external ? badge("external", "warn") : snapshot.policyName ?? snapshot.policy ?? "—"),
        h("dt", {}, "Repository"),
        h("dd", {}, h("code", {}, snapshot.repoUrl ?? snapshot.repo)),
        h("dt", {}, "Tags"),
        h("dd", {}, snapshot.tags.length ? snapshot.tags.join(", ") : "—"),
      ),
    ),
    section(
      "On which agent, with which policy's secret",
      h(
        "div",
        { class: "restore" },
        h("label", { for: "snapshot-agent" }, "Agent (it must hold the repository's secret)"),
        agentPick,
        h("label", { for: "snapshot-policy" }, "Policy (its repository and the secret's name)"),
        policyPick,
      ),
      choices.length === 0 ? h("p", { class: "error" }, "No policy names this repository: create one (it may stay paused) to browse and restore.") : null,
    ),
    section("Files", h("p", { class: "muted" }, "Listed by the agent with restic ls when asked; nothing is stored."), browseButton, files),
    section("Restore", form),
  );
}

function select(id, options, chosen) {
  return h(
    "select",
    { id, name: id },
    options.map(([value, label]) => h("option", { value, selected: value === chosen }, label)),
  );
}

/** The path's parts as buttons that list them. */
function crumbs(path, browse) {
  const parts = path.split("/").filter(Boolean);
  const nav = h("p", { class: "crumbs path" });
  const go = (to, label) => {
    const b = h("button", { type: "button", class: "link" }, label);
    b.addEventListener("click", () => browse(to));
    return b;
  };
  nav.append(go("/", "/"));
  parts.forEach((part, i) => {
    nav.append(" ", go(`/${parts.slice(0, i + 1).join("/")}`, part), " /");
  });
  return nav;
}

function entryRow(entry, dir, browse, include) {
  const full = `${dir.replace(/\/$/, "")}/${entry.name}`;
  const pick = h("input", { type: "checkbox", "aria-label": `Restore ${full}` });
  pick.addEventListener("change", () => {
    const lines = new Set(include.value.split("\n").map((l) => l.trim()).filter(Boolean));
    if (pick.checked) lines.add(full);
    else lines.delete(full);
    include.value = [...lines].join("\n");
  });
  let name = entry.name;
  if (entry.kind === "dir") {
    name = h("button", { type: "button", class: "link" }, `${entry.name}/`);
    name.addEventListener("click", () => browse(full));
  }
  return h(
    "tr",
    { "data-name": entry.name, "data-kind": entry.kind },
    h("td", {}, pick),
    h("td", {}, name),
    h("td", {}, entry.kind === "file" ? bytes(entry.size) : "—"),
    h("td", {}, entry.mtime ? time(entry.mtime) : "—"),
  );
}
