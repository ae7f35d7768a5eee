// The workbench page's behaviour: decisions, totals, what-if re-solves, scenarios. Text goes in with textContent,
// never innerHTML: ids and reasons are data.
"use strict";
(function () {
  const userBox = document.getElementById("user");
  userBox.value = localStorage.getItem("repfit.user") || "";
  userBox.addEventListener("change", () => localStorage.setItem("repfit.user", userBox.value.trim()));
  const user = () => userBox.value.trim() || null;

  function money(x) {
    if (x === null || x === undefined) return "";
    const s = Math.round(x).toLocaleString("en-US");
    return x > 0 ? "+" + s : s;
  }

  const num = (x) => (x === null || x === undefined ? "" : Math.round(x).toLocaleString("en-US"));

  async function api(method, url, body) {
    const opts = { method, headers: { "Content-Type": "application/json" } };
    if (user()) opts.headers["X-Repfit-User"] = user();
    if (body !== undefined) opts.body = JSON.stringify(body);
    const res = await fetch(url, opts);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.detail || res.statusText);
    return data;
  }

  async function refreshTotals() {
    const t = await api("GET", "/api/totals");
    const set = (k, v) => document.querySelectorAll(`[data-total="${k}"]`).forEach((e) => { e.textContent = v; });
    set("approved_uplift", money(t.approved_uplift));
    ["approved_moves", "accepted", "rejected", "pending", "reps_over_capacity_approved", "rep_band_breaches_approved"]
      .forEach((k) => set(k, String(t[k])));
    set("load_cv_approved", t.spread_approved.load.cv.toFixed(3));
    set("value_cv_approved", t.spread_approved.value.cv.toFixed(3));
    document.body.dataset.totalsVersion = String(Number(document.body.dataset.totalsVersion || 0) + 1);
  }

  document.querySelectorAll("tbody.group").forEach((g) => {
    const decide = async (decision, button) => {
      button.disabled = true;
      try {
        for (const id of g.dataset.ids.split(" ")) {
          await api("POST", "/api/decisions", { suggestion_id: id, decision, user: user() });
          const row = g.querySelector(`tr[data-id="${id}"]`);
          row.className = "move " + decision;
          row.querySelector(".state").textContent = decision + (user() ? " by " + user() : "");
        }
        await refreshTotals();
      } catch (e) {
        alert(e.message);
      } finally {
        button.disabled = false;
      }
    };
    g.querySelector("button.accept").addEventListener("click", (ev) => decide("accept", ev.target));
    g.querySelector("button.reject").addEventListener("click", (ev) => decide("reject", ev.target));
  });

  document.getElementById("export").addEventListener("click", (ev) => {
    ev.currentTarget.href = "/api/export.csv" + (user() ? "?user=" + encodeURIComponent(user()) : "");
  });

  const words = (s) => s.split(/[\s,]+/).filter(Boolean);

  async function follow(start) {
    // a re-solve job: show its stage until it ends, then show the new plan
    const box = document.getElementById("job"), bar = document.getElementById("job-progress"),
      stage = document.getElementById("job-stage"), err = document.getElementById("job-error");
    err.hidden = true;
    try {
      let job = await start;
      box.hidden = false;
      while (job.state === "queued" || job.state === "running") {
        bar.value = job.progress;
        stage.textContent = `${job.stage} (${job.seconds.toFixed(1)} s)`;
        await new Promise((r) => setTimeout(r, 300));
        job = await api("GET", "/api/jobs/" + job.id);
      }
      if (job.state === "failed") throw new Error(job.error);
      bar.value = 1;
      stage.textContent = "done";
      window.location.reload();
    } catch (e) {
      box.hidden = true;
      err.textContent = e.message;
      err.hidden = false;
      document.getElementById("whatif").scrollIntoView();
    }
  }

  document.querySelectorAll("button.apply").forEach((b) => b.addEventListener("click", () =>
    follow(api("POST", `/api/scenarios/${encodeURIComponent(b.dataset.name)}/apply`))));

  document.getElementById("whatif-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { user: user(), locks: {}, capacity: {} };
    words(f.lock.value).forEach((a) => { body.locks[a] = true; });
    words(f.unlock.value).forEach((a) => { body.locks[a] = false; });
    for (const pair of words(f.capacity.value)) {
      const [rep, n] = pair.split("=");
      body.capacity[rep] = Number(n);
    }
    if (!Object.keys(body.locks).length) delete body.locks;
    if (!Object.keys(body.capacity).length) delete body.capacity;
    if (f.max_moves.value === "") body.unlimited_moves = true; else body.max_moves = Number(f.max_moves.value);
    body.balance = words(f.balance.value);
    if (!body.balance.length) body.balance = ["none"];
    body.balance_tiers = f.balance_tiers.checked;
    body.reset = f.reset.checked;
    follow(api("POST", "/api/solve", body));
  });

  document.getElementById("scenario-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/scenarios", { name: ev.target.name.value, user: user() });
      window.location.reload();
    } catch (e) {
      alert(e.message);
    }
  });

  document.getElementById("compare-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target, out = document.getElementById("compare");
    out.replaceChildren();
    try {
      const c = await api("GET", `/api/scenarios/compare?a=${encodeURIComponent(f.a.value)}&b=${encodeURIComponent(f.b.value)}`);
      const table = (head, rows) => {
        const t = document.createElement("table");
        t.className = "data";
        [head, ...rows].forEach((cells, i) => {
          const tr = t.insertRow();
          cells.forEach((v) => {
            const cell = document.createElement(i ? "td" : "th");
            cell.textContent = v === null || v === undefined ? "" : String(v);
            tr.appendChild(cell);
          });
        });
        return t;
      };
      out.appendChild(table(["", c.a.name, c.b.name], [
        ["plan uplift", money(c.a.plan_uplift), money(c.b.plan_uplift)],
        ["plan moves", c.a.plan_moves, c.b.plan_moves],
        ["approved uplift", money(c.a.approved_uplift), money(c.b.approved_uplift)],
        ["approved moves", c.a.approved_moves, c.b.approved_moves],
        ["move budget", c.a.settings.max_moves ?? "none", c.b.settings.max_moves ?? "none"],
        ["bands", c.a.settings.balance.join(" "), c.b.settings.balance.join(" ")],
      ]));
      const h = document.createElement("h3");
      h.textContent = `Reps whose book differs (${c.per_rep_changes.length})`;
      out.appendChild(h);
      out.appendChild(table(["rep", "load today", `capacity ${c.a.name}`, `capacity ${c.b.name}`, `load plan ${c.a.name}`,
        `load plan ${c.b.name}`, `approved ${c.a.name}`, `approved ${c.b.name}`, `value plan ${c.a.name}`, `value plan ${c.b.name}`],
        c.per_rep_changes.map((r) => [r.rep_id, r.load_today, r.capacity_a, r.capacity_b, r.load_plan_a, r.load_plan_b,
          r.load_approved_a, r.load_approved_b, num(r.value_plan_a), num(r.value_plan_b)])));
    } catch (e) {
      out.textContent = e.message;
    }
  });
})();
