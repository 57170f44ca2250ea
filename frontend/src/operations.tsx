// Deployments (health, request rate, errors, latency) and monitoring (drift per feature over
// time, quality over time, alerts, retrain decisions).
import { LineChart, Series } from "./chart";
import { lineageHref } from "./lineage";
import { href, navigate, Route } from "./router";
import { num, useApi, when } from "./util";

function pct(v: number | null | undefined): string {
  return v === null || v === undefined ? "—" : `${(100 * v).toFixed(2)}%`;
}

function Health(props: { h: any }) {
  const h = props.h;
  if (!h) return <span class="muted">no report yet</span>;
  return (
    <span>
      <span class={`status ${h.up === 0 ? "failed" : h.up === 1 ? "finished" : ""}`}>{h.up === 0 ? "down" : h.up === 1 ? "up" : "?"}</span>{" "}
      {h.request_rate !== null && h.request_rate !== undefined ? `${num(h.request_rate, 3)} req/s · ` : ""}
      errors {pct(h.error_rate)} · p50 {num(h.p50_ms, 3)} ms · p99 {num(h.p99_ms, 3)} ms
    </span>
  );
}

export function DeploymentsPage() {
  const { data, error } = useApi<any>("/deployments");
  if (error) return <p class="error">{error.message}</p>;
  if (!data) return <p>loading…</p>;
  if (!data.available) return <p class="muted">This server's store records no deployments.</p>;
  return (
    <section>
      <h2>Deployments</h2>
      <table data-testid="deployments">
        <thead>
          <tr>
            <th>name</th>
            <th>target</th>
            <th>status</th>
            <th>model</th>
            <th>revision</th>
            <th>health (newest report)</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data.items.map((d: any) => (
            <tr>
              <td>
                <a href={href(["deployments", d.name])}>{d.name}</a>
              </td>
              <td>{d.target}</td>
              <td>
                <span class={`status ${d.status}`}>{d.status}</span>
              </td>
              <td>{d.model ? <a href={href(["models", d.model.split("@")[0]])}>{d.model}</a> : "—"}</td>
              <td>{d.revision ?? "—"}</td>
              <td>
                <Health h={d.health} />
              </td>
              <td>
                <a href={lineageHref("deployment", d.name)} data-testid={`lineage-${d.name}`}>
                  lineage
                </a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function timeSeries(points: any[], field: string, label: string): Series {
  return { label, points: points.map((p) => [p.t ?? Date.parse(p.created_at) / 1000, p[field] ?? null]) };
}

export function DeploymentPage(props: { name: string }) {
  const { data: d, error } = useApi<any>(`/deployments/${encodeURIComponent(props.name)}`);
  if (error) return <p class="error">{error.message}</p>;
  if (!d) return <p>loading…</p>;
  const h: any[] = d.health;
  return (
    <section>
      <h2>
        Deployment {d.name} <span class={`status ${d.status}`}>{d.status}</span>
      </h2>
      <p>
        <a href={lineageHref("deployment", d.name)}>lineage</a> · <a href={href(["monitoring"], { deployment: d.name })}>monitoring</a> ·{" "}
        {d.target} · model {d.model ?? "—"} · revision {d.revision ?? "—"} · {d.replicas} replica(s)
        {d.port ? ` · port ${d.port}` : ""}
      </p>
      <p>
        <Health h={h[h.length - 1]} />
      </p>
      {h.length > 0 && (
        <div class="charts">
          <LineChart time title="latency (ms)" series={[timeSeries(h, "p50_ms", "p50"), timeSeries(h, "p99_ms", "p99")]} />
          <LineChart time title="request rate (req/s)" series={[timeSeries(h, "request_rate", "req/s")]} />
          <LineChart time title="error rate" series={[timeSeries(h, "error_rate", "errors")]} />
        </div>
      )}
      {(d.config?.candidate || d.rollouts?.length > 0) && <Rollouts d={d} />}
      <div class="grid">
        <div class="panel">
          <h3>Revisions</h3>
          <table>
            {d.revisions.map((r: any) => (
              <tr>
                <td>#{r.revision}</td>
                <td>
                  {r.model_name}@{r.model_version}
                </td>
                <td>{r.status}</td>
                <td>{when(r.created_at)}</td>
              </tr>
            ))}
          </table>
        </div>
        <div class="panel">
          <h3>Events</h3>
          <table>
            {d.events.map((e: any) => (
              <tr>
                <td>{when(e.at)}</td>
                <td>{e.kind}</td>
                <td>{e.message}</td>
              </tr>
            ))}
          </table>
        </div>
      </div>
    </section>
  );
}

// Progressive rollouts: the variants serving now, and each rollout's steps with their analysis
// (candidate vs serving version on the same window) and the per-variant series over the steps.
function Rollouts(props: { d: any }) {
  const { d } = props;
  const candidate = d.config?.candidate;
  const split = d.config?.split;
  const num = (v: any) => (v === null || v === undefined ? "—" : Number(v).toPrecision(4));
  return (
    <div class="panel">
      <h3>Variants and rollouts</h3>
      <p>
        primary {d.model ?? "—"}
        {candidate && (
          <>
            {" "}· candidate {candidate.ref} · {split ? `${split.mode} ${split.percent}%` : "no traffic yet"}
            {split?.sticky ? ` (sticky by ${split.sticky})` : ""}
          </>
        )}
      </p>
      {(d.rollouts ?? []).map((r: any) => {
        const at = (s: any) => Date.parse(s.analysis.until) / 1000;
        const check = (s: any, name: string, key: string) =>
          s.analysis.results.find((c: any) => c.check === name)?.[key] ?? null;
        const series = (name: string) => [
          { label: "candidate", points: r.steps.map((s: any) => [at(s), check(s, name, "candidate")]) as [number, number | null][] },
          { label: "serving", points: r.steps.map((s: any) => [at(s), check(s, name, "primary")]) as [number, number | null][] },
        ];
        return (
          <div class="rollout">
            <h4>
              {r.strategy} rollout {r.id} of {r.candidate} (serving {r.primary}):{" "}
              <span class={`status ${r.status}`}>{r.status}</span>
            </h4>
            {r.reason && <p>{r.reason}</p>}
            {r.steps.length > 0 && (
              <div class="charts">
                <LineChart time title="p99 latency (ms) by variant" series={series("p99 latency ms")} />
                <LineChart time title="error rate by variant" series={series("error rate")} />
              </div>
            )}
            {r.steps.map((s: any) => (
              <table>
                <caption>
                  step {s.index}: {s.mode} {s.percent}% — {s.analysis.passed ? "passed" : "FAILED"}
                </caption>
                <tr>
                  <th>check</th>
                  <th>candidate</th>
                  <th>serving</th>
                  <th>limit</th>
                  <th>result</th>
                  <th>detail</th>
                </tr>
                {s.analysis.results.map((c: any) => (
                  <tr>
                    <td>{c.check}</td>
                    <td>{num(c.candidate)}</td>
                    <td>{num(c.primary)}</td>
                    <td>{c.limit}</td>
                    <td class={c.passed === false ? "fail" : ""}>{c.passed === null ? "n/a" : c.passed ? "pass" : "FAIL"}</td>
                    <td>{c.detail}</td>
                  </tr>
                ))}
              </table>
            ))}
          </div>
        );
      })}
    </div>
  );
}

const QUALITY = ["accuracy", "roc_auc", "f1", "rmse", "mae", "precision", "recall"];

export function MonitoringPage(props: { route: Route }) {
  const deployment = props.route.params.get("deployment") ?? "";
  const focus = props.route.params.get("report");
  const { data, error } = useApi<any>("/monitoring", { deployment });
  if (error) return <p class="error">{error.message}</p>;
  if (!data) return <p>loading…</p>;
  if (!data.available) return <p class="muted">This server's store records no monitoring.</p>;
  const reports: any[] = data.reports;
  const features = Array.from(new Set(reports.flatMap((r) => Object.keys(r.drift)))).sort();
  // What drifts now: each deployment's newest report (reports come oldest first), not every
  // feature that ever drifted in the window shown.
  const latest = Array.from(new Map(reports.map((r) => [r.deployment, r])).values());
  const drifted = features.filter((f) => latest.some((r) => r.drift[f]?.drifted));
  const t = (r: any) => Date.parse(r.created_at) / 1000;
  const quality = QUALITY.filter((k) => reports.some((r) => typeof r.metrics[k] === "number"));
  return (
    <section>
      <h2>Monitoring</h2>
      <form class="filters">
        <select value={deployment} onChange={(e) => navigate(["monitoring"], e.currentTarget.value ? { deployment: e.currentTarget.value } : {})}>
          <option value="">all deployments</option>
          {data.deployments.map((n: string) => (
            <option value={n}>{n}</option>
          ))}
        </select>
      </form>
      {reports.length === 0 && <p class="muted">No monitor reports yet.</p>}
      {drifted.length > 0 && (
        <p class="alert" data-testid="drifted-features">
          Drifted in the latest report ({latest.map((r) => `#${r.id}`).join(", ")}):{" "}
          {drifted.map((f) => (
            <strong class="drifted-feature">{f} </strong>
          ))}
        </p>
      )}
      {features.length > 0 && (
        <>
          <h3>Drift per feature over time</h3>
          <div class="scroll">
            <table class="heat" data-testid="drift-table">
              <thead>
                <tr>
                  <th>feature</th>
                  {reports.map((r) => (
                    <th title={r.created_at} class={focus === String(r.id) ? "selected" : ""}>
                      #{r.id}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {features.map((f) => (
                  <tr data-feature={f}>
                    <th>{f}</th>
                    {reports.map((r) => {
                      const cell = r.drift[f];
                      if (!cell) return <td class="na">·</td>;
                      return (
                        <td class={cell.drifted ? "drift" : "ok"} title={`${cell.test ?? ""} p=${num(cell.p_value, 3)}`}>
                          {cell.drifted ? "drift" : "ok"}
                          <small> p {num(cell.p_value, 2)}</small>
                        </td>
                      );
                    })}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {reports.length > 0 && (
        <div class="charts">
          <LineChart
            time
            title="drift share"
            series={[{ label: "drift share", points: reports.map((r) => [t(r), r.metrics.drift_share ?? null]) }]}
          />
          {quality.length > 0 && (
            <LineChart time title="quality" series={quality.map((k) => ({ label: k, points: reports.map((r) => [t(r), r.metrics[k] ?? null]) }))} />
          )}
        </div>
      )}
      <h3>Alerts</h3>
      <table data-testid="alerts">
        <thead>
          <tr>
            <th>report</th>
            <th>when</th>
            <th>deployment</th>
            <th>policy</th>
            <th>status</th>
            <th>why</th>
          </tr>
        </thead>
        <tbody>
          {reports
            .slice()
            .reverse()
            .flatMap((r) =>
              r.fired.map((f: any) => (
                <tr>
                  <td>
                    <a href={lineageHref("monitor_report", String(r.id))}>#{r.id}</a>
                  </td>
                  <td>{when(r.created_at)}</td>
                  <td>{r.deployment}</td>
                  <td>{f.policy}</td>
                  <td>{f.status}</td>
                  <td>{(f.reasons ?? [f.reason]).filter(Boolean).join("; ")}</td>
                </tr>
              )),
            )}
        </tbody>
      </table>
      <h3>Retrain decisions and actions</h3>
      <table data-testid="actions">
        <thead>
          <tr>
            <th>started</th>
            <th>deployment</th>
            <th>policy</th>
            <th>action</th>
            <th>status</th>
            <th>reason</th>
          </tr>
        </thead>
        <tbody>
          {data.actions.map((a: any) => (
            <tr>
              <td>{when(a.started_at)}</td>
              <td>{a.deployment}</td>
              <td>{a.policy}</td>
              <td>{a.action}</td>
              <td>
                <span class={`status ${a.status}`}>{a.status}</span>
              </td>
              <td>{a.reason ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
