import { useState } from "preact/hooks";
import { LineChart } from "./chart";
import { lineageHref } from "./lineage";
import { href, navigate, Route } from "./router";
import { num, short, useApi, when } from "./util";

const PAGE = 50;
const STATUSES = ["", "running", "finished", "failed"];

function Status(props: { status: string }) {
  return <span class={`status ${props.status}`}>{props.status}</span>;
}

export function RunsPage(props: { route: Route }) {
  const p = props.route.params;
  const state = {
    status: p.get("status") ?? "",
    pipeline: p.get("pipeline") ?? "",
    q: p.get("q") ?? "",
    sort: p.get("sort") ?? "start_time",
    order: p.get("order") ?? "desc",
    metric: p.get("metric") ?? "",
    offset: Number(p.get("offset") ?? 0),
  };
  const set = (change: Partial<typeof state>) => {
    const next = { ...state, offset: 0, ...change };
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(next)) if (v !== "" && v !== 0) params[k] = String(v);
    navigate(["runs"], params);
  };
  const [selected, setSelected] = useState<string[]>([]);
  const [search, setSearch] = useState(state.q);
  const pipelines = useApi<any>("/runs/pipelines");
  const { data, error, loading } = useApi<any>("/runs", { ...state, limit: PAGE });
  const items: any[] = data?.items ?? [];
  const metricKeys = Array.from(new Set(items.flatMap((r) => Object.keys(r.metrics)))).sort().slice(0, 6);
  const sortBy = (sort: string, metric = "") => {
    const same = state.sort === sort && state.metric === metric;
    set({ sort, metric, order: same && state.order === "desc" ? "asc" : "desc" });
  };
  const arrow = (sort: string, metric = "") =>
    state.sort === sort && state.metric === metric ? (state.order === "desc" ? " ▼" : " ▲") : "";
  const toggle = (id: string) => setSelected((s) => (s.includes(id) ? s.filter((x) => x !== id) : [...s, id].slice(-10)));
  return (
    <section>
      <h2>Runs {data && <span class="muted">({data.total})</span>}</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          set({ q: search });
        }}
      >
        <input placeholder="name or id prefix" value={search} onInput={(e) => setSearch(e.currentTarget.value)} name="q" />
        <select value={state.status} onChange={(e) => set({ status: e.currentTarget.value })} name="status">
          {STATUSES.map((s) => (
            <option value={s}>{s || "any status"}</option>
          ))}
        </select>
        <select value={state.pipeline} onChange={(e) => set({ pipeline: e.currentTarget.value })} name="pipeline">
          <option value="">any pipeline</option>
          {(pipelines.data?.items ?? []).map((name: string) => (
            <option value={name}>{name}</option>
          ))}
        </select>
        <button type="submit">filter</button>
        <button type="button" disabled={selected.length < 1} onClick={() => navigate(["compare"], { runs: selected.join(",") })}>
          compare {selected.length || ""}
        </button>
      </form>
      {error && <p class="error">{error.message}</p>}
      <table class={loading ? "loading" : ""} data-testid="runs-table">
        <thead>
          <tr>
            <th />
            <th>id</th>
            <th class="sortable" onClick={() => sortBy("name")}>name{arrow("name")}</th>
            <th>pipeline</th>
            <th class="sortable" onClick={() => sortBy("status")}>status{arrow("status")}</th>
            <th class="sortable" onClick={() => sortBy("start_time")}>started{arrow("start_time")}</th>
            <th>duration</th>
            {metricKeys.map((k) => (
              <th class="sortable num" onClick={() => sortBy("metric", k)}>
                {k}
                {arrow("metric", k)}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {items.map((r) => (
            <tr>
              <td>
                <input type="checkbox" checked={selected.includes(r.id)} onChange={() => toggle(r.id)} aria-label={`select ${r.id}`} />
              </td>
              <td>
                <a href={href(["runs", r.id])} class="mono">
                  {short(r.id, 8)}
                </a>
              </td>
              <td>{r.name ?? ""}</td>
              <td>{r.pipeline ?? ""}</td>
              <td>
                <Status status={r.status} />
              </td>
              <td>{when(r.start_time)}</td>
              <td class="num">{num(r.duration_s, 3)} s</td>
              {metricKeys.map((k) => (
                <td class="num">{num(r.metrics[k])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      {data && (
        <div class="pager">
          <button disabled={state.offset === 0} onClick={() => set({ ...state, offset: Math.max(0, state.offset - PAGE) })}>
            ← newer
          </button>
          <span>
            {data.total ? state.offset + 1 : 0}–{Math.min(state.offset + PAGE, data.total)} of {data.total}
          </span>
          <button disabled={state.offset + PAGE >= data.total} onClick={() => set({ ...state, offset: state.offset + PAGE })}>
            older →
          </button>
        </div>
      )}
    </section>
  );
}

function KeyValues(props: { title: string; values: Record<string, any> }) {
  const keys = Object.keys(props.values).sort();
  if (!keys.length) return null;
  return (
    <div class="panel">
      <h3>{props.title}</h3>
      <table>
        {keys.map((k) => (
          <tr>
            <th>{k}</th>
            <td class="mono">{typeof props.values[k] === "number" ? num(props.values[k]) : String(props.values[k])}</td>
          </tr>
        ))}
      </table>
    </div>
  );
}

export function RunPage(props: { id: string }) {
  const { data: run, error } = useApi<any>(`/runs/${encodeURIComponent(props.id)}`);
  if (error) return <p class="error">{error.message}</p>;
  if (!run) return <p>loading…</p>;
  return (
    <section>
      <h2>
        Run <span class="mono">{short(run.id, 12)}</span> {run.name} <Status status={run.status} />
      </h2>
      <p>
        <a href={lineageHref("run", run.id)}>lineage</a> · pipeline {run.pipeline ?? "—"} · started {when(run.start_time)} ·{" "}
        {num(run.duration_s, 3)} s · git {short(run.git_commit, 10)}
        {run.git_dirty ? " (dirty)" : ""} · user {run.user ?? "—"}
        {run.parent_id && (
          <>
            {" "}
            · parent <a href={href(["runs", run.parent_id])}>{short(run.parent_id, 8)}</a>
          </>
        )}
      </p>
      {run.error && <pre class="error">{run.error}</pre>}
      {run.models.length > 0 && (
        <p>
          models:{" "}
          {run.models.map((ref: string) => (
            <a href={href(["models", ref.split("@")[0]])}>{ref} </a>
          ))}
        </p>
      )}
      <div class="grid">
        <KeyValues title="Parameters" values={run.params} />
        <KeyValues title="Metrics (last value)" values={run.metrics} />
        <KeyValues title="Tags" values={run.tags} />
      </div>
      {run.metric_keys.length > 0 && <CompareCharts ids={[run.id]} />}
      {run.children.length > 0 && (
        <div class="panel">
          <h3>Steps</h3>
          <table>
            {run.children.map((c: any) => (
              <tr>
                <td>
                  <a href={href(["runs", c.id])}>{c.name ?? short(c.id, 8)}</a>
                </td>
                <td>
                  <Status status={c.status} />
                </td>
                <td class="num">{num(c.duration_s, 3)} s</td>
              </tr>
            ))}
          </table>
        </div>
      )}
      {run.artifacts.length > 0 && (
        <div class="panel">
          <h3>Artifacts</h3>
          <table>
            {run.artifacts.map((a: any) => (
              <tr>
                <td>{a.name}</td>
                <td>{a.kind}</td>
                <td class="mono">
                  <a href={lineageHref("artifact", a.digest)}>{short(a.digest)}</a>
                </td>
              </tr>
            ))}
          </table>
        </div>
      )}
    </section>
  );
}

function CompareCharts(props: { ids: string[] }) {
  const { data, error } = useApi<any>("/compare", { runs: props.ids });
  if (error) return <p class="error">{error.message}</p>;
  if (!data) return null;
  const label = (id: string) => {
    const r = data.runs.find((x: any) => x.id === id);
    return `${short(id, 8)}${r?.name ? " " + r.name : ""}`;
  };
  // A metric logged once per run is a number, not a chart: one dot on an invented axis says
  // nothing, so those are listed as values and only histories are drawn.
  const series = (key: string) => Object.entries(data.series[key] as Record<string, [number, number][]>);
  const histories = data.keys.filter((key: string) => series(key).some(([, points]) => points.length > 1));
  const single = data.keys.filter((key: string) => !histories.includes(key));
  return (
    <>
      {single.length > 0 && (
        <div class="panel">
          <h3>Single-value metrics</h3>
          <table data-testid="single-metrics">
            <thead>
              <tr>
                <th>metric</th>
                {data.runs.map((r: any) => (
                  <th class="num">{label(r.id)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {single.map((key: string) => (
                <tr data-metric={key}>
                  <th>{key}</th>
                  {data.runs.map((r: any) => (
                    <td class="num">{num(data.series[key][r.id]?.[0]?.[1])}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {histories.length > 0 && (
        <div class="charts">
          {histories.map((key: string) => (
            <LineChart title={key} series={series(key).map(([id, points]) => ({ label: label(id), points }))} />
          ))}
        </div>
      )}
    </>
  );
}

export function ComparePage(props: { route: Route }) {
  const ids = (props.route.params.get("runs") ?? "").split(",").filter(Boolean);
  const { data, error } = useApi<any>(ids.length ? "/compare" : null, { runs: ids });
  if (!ids.length) return <p>Select runs on the runs page to compare them.</p>;
  if (error) return <p class="error">{error.message}</p>;
  if (!data) return <p>loading…</p>;
  const params = Array.from(new Set(data.runs.flatMap((r: any) => Object.keys(r.params)))).sort() as string[];
  const metrics = Array.from(new Set(data.runs.flatMap((r: any) => Object.keys(r.metrics)))).sort() as string[];
  const differs = (key: string, field: string) => new Set(data.runs.map((r: any) => JSON.stringify(r[field][key]))).size > 1;
  return (
    <section>
      <h2>Compare {ids.length} runs</h2>
      <table data-testid="compare-table">
        <thead>
          <tr>
            <th />
            {data.runs.map((r: any) => (
              <th>
                <a href={href(["runs", r.id])}>{short(r.id, 8)}</a> {r.name}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {params.map((k) => (
            <tr class={differs(k, "params") ? "differs" : ""}>
              <th>param {k}</th>
              {data.runs.map((r: any) => (
                <td class="mono">{r.params[k] ?? "—"}</td>
              ))}
            </tr>
          ))}
          {metrics.map((k) => (
            <tr class={differs(k, "metrics") ? "differs" : ""}>
              <th>metric {k}</th>
              {data.runs.map((r: any) => (
                <td class="num">{num(r.metrics[k])}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <CompareCharts ids={ids} />
    </section>
  );
}
