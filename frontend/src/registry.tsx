// Datasets (versions, profiles, diffs) and the model registry (versions, aliases, history).
import { useState } from "preact/hooks";
import { lineageHref } from "./lineage";
import { href, navigate, Route } from "./router";
import { num, short, size, useApi, when } from "./util";

export function DatasetsPage() {
  const { data, error } = useApi<any>("/datasets");
  if (error) return <p class="error">{error.message}</p>;
  return (
    <section>
      <h2>Datasets</h2>
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>latest</th>
            <th>created</th>
            <th>description</th>
          </tr>
        </thead>
        <tbody>
          {(data?.items ?? []).map((d: any) => (
            <tr>
              <td>
                <a href={href(["datasets", d.name])}>{d.name}</a>
              </td>
              <td>{d.latest_version ? <a href={href(["datasets", d.name, d.latest_version])}>v{d.latest_version}</a> : "—"}</td>
              <td>{when(d.created_at)}</td>
              <td>{d.description ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function DatasetPage(props: { name: string; route: Route }) {
  const { data, error } = useApi<any>(`/datasets/${encodeURIComponent(props.name)}`);
  const [a, setA] = useState("");
  const [b, setB] = useState("");
  if (error) return <p class="error">{error.message}</p>;
  if (!data) return <p>loading…</p>;
  const versions: any[] = data.versions;
  return (
    <section>
      <h2>Dataset {data.name}</h2>
      <table>
        <thead>
          <tr>
            <th>version</th>
            <th>format</th>
            <th class="num">size</th>
            <th class="num">rows</th>
            <th class="num">columns</th>
            <th>digest</th>
            <th>created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {versions.map((v) => (
            <tr>
              <td>
                <a href={href(["datasets", data.name, v.version])}>{v.ref}</a>
              </td>
              <td>{v.format}</td>
              <td class="num">{size(v.size)}</td>
              <td class="num">{num(v.rows)}</td>
              <td class="num">{num(v.columns)}</td>
              <td class="mono">{short(v.digest)}</td>
              <td>{when(v.created_at)}</td>
              <td>
                <a href={lineageHref("dataset_version", v.ref)}>lineage</a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {versions.length > 1 && (
        <form
          class="filters"
          onSubmit={(e) => {
            e.preventDefault();
            navigate(["datasets", data.name, "diff"], { a: a || String(versions[1].version), b: b || String(versions[0].version) });
          }}
        >
          diff
          <select onChange={(e) => setA(e.currentTarget.value)} value={a || String(versions[1].version)}>
            {versions.map((v) => (
              <option value={v.version}>v{v.version}</option>
            ))}
          </select>
          →
          <select onChange={(e) => setB(e.currentTarget.value)} value={b || String(versions[0].version)}>
            {versions.map((v) => (
              <option value={v.version}>v{v.version}</option>
            ))}
          </select>
          <button type="submit">compare</button>
        </form>
      )}
    </section>
  );
}

function Histogram(props: { histogram: { edges: number[]; counts: number[] } | null }) {
  if (!props.histogram) return null;
  const max = Math.max(1, ...props.histogram.counts);
  return (
    <svg width="120" height="28" class="spark">
      {props.histogram.counts.map((c, i) => {
        const h = (c / max) * 26;
        const w = 120 / props.histogram!.counts.length;
        return <rect x={i * w} y={28 - h} width={Math.max(1, w - 1)} height={h} fill="#2563eb" />;
      })}
    </svg>
  );
}

export function DatasetVersionPage(props: { name: string; version: string }) {
  const { data: v, error } = useApi<any>(`/datasets/${encodeURIComponent(props.name)}/versions/${props.version}`);
  if (error) return <p class="error">{error.message}</p>;
  if (!v) return <p>loading…</p>;
  const columns: any[] = v.profile?.columns ?? [];
  return (
    <section>
      <h2 data-testid="dataset-version">Dataset version {v.ref}</h2>
      <p>
        <a href={href(["datasets", props.name])}>all versions</a> · <a href={lineageHref("dataset_version", v.ref)}>lineage</a> ·{" "}
        {v.format} · {size(v.size)} · {num(v.rows)} rows · <span class="mono">{v.digest}</span> · {when(v.created_at)}
      </p>
      <h3>Profile</h3>
      <table data-testid="profile">
        <thead>
          <tr>
            <th>column</th>
            <th>type</th>
            <th class="num">missing</th>
            <th class="num">min</th>
            <th class="num">mean</th>
            <th class="num">max</th>
            <th class="num">std</th>
            <th>distribution / top values</th>
          </tr>
        </thead>
        <tbody>
          {columns.map((c) => (
            <tr>
              <td>{c.name}</td>
              <td>{c.logical_type}</td>
              <td class="num">{(100 * (c.missing_share ?? 0)).toFixed(1)}%</td>
              <td class="num">{typeof c.min === "number" ? num(c.min) : c.min ?? ""}</td>
              <td class="num">{num(c.mean)}</td>
              <td class="num">{typeof c.max === "number" ? num(c.max) : c.max ?? ""}</td>
              <td class="num">{num(c.std)}</td>
              <td>
                {c.histogram ? (
                  <Histogram histogram={c.histogram} />
                ) : (
                  (c.top ?? []).slice(0, 5).map((t: any) => `${t.value} (${t.count})`).join(", ")
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function DatasetDiffPage(props: { name: string; route: Route }) {
  const a = props.route.params.get("a");
  const b = props.route.params.get("b");
  const { data: d, error } = useApi<any>(`/datasets/${encodeURIComponent(props.name)}/diff`, { a, b });
  if (error) return <p class="error">{error.message}</p>;
  if (!d) return <p>loading…</p>;
  return (
    <section>
      <h2>
        {d.a} → {d.b} {d.identical && <span class="muted">(identical)</span>}
      </h2>
      <p>
        rows {num(d.row_count_a)} → {num(d.row_count_b)} · files +{d.files_added.length} −{d.files_removed.length} ~{d.files_changed.length}
        {d.columns_added.length > 0 && <> · new columns: {d.columns_added.join(", ")}</>}
        {d.columns_removed.length > 0 && <> · removed columns: {d.columns_removed.join(", ")}</>}
      </p>
      {d.type_changes.length > 0 && (
        <p>type changes: {d.type_changes.map((t: any) => `${t.column} ${t.old}→${t.new}`).join(", ")}</p>
      )}
      <table>
        <thead>
          <tr>
            <th>column</th>
            <th class="num">mean A</th>
            <th class="num">mean B</th>
            <th class="num">shift (std of A)</th>
            <th class="num">missing A→B</th>
            <th>categories</th>
          </tr>
        </thead>
        <tbody>
          {d.shifts.map((s: any) => (
            <tr class={Math.abs(s.mean_shift_std ?? 0) >= 0.5 || s.new_categories.length ? "differs" : ""}>
              <td>{s.column}</td>
              <td class="num">{num(s.mean_a)}</td>
              <td class="num">{num(s.mean_b)}</td>
              <td class="num">{num(s.mean_shift_std, 3)}</td>
              <td class="num">
                {(100 * s.missing_share_a).toFixed(1)}% → {(100 * s.missing_share_b).toFixed(1)}%
              </td>
              <td>
                {s.new_categories.length > 0 && <>+{s.new_categories.join(", ")} </>}
                {s.vanished_categories.length > 0 && <>−{s.vanished_categories.join(", ")}</>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function ModelsPage() {
  const { data, error } = useApi<any>("/models");
  if (error) return <p class="error">{error.message}</p>;
  return (
    <section>
      <h2>Model registry</h2>
      <table>
        <thead>
          <tr>
            <th>model</th>
            <th>latest</th>
            <th>aliases</th>
            <th>created</th>
          </tr>
        </thead>
        <tbody>
          {(data?.items ?? []).map((m: any) => (
            <tr>
              <td>
                <a href={href(["models", m.name])}>{m.name}</a>
              </td>
              <td>{m.latest_version ? `v${m.latest_version}` : "—"}</td>
              <td>
                {Object.entries(m.aliases).map(([alias, v]) => (
                  <span class="badge alias">
                    {alias} → v{String(v)}
                  </span>
                ))}
              </td>
              <td>{when(m.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function ModelPage(props: { name: string; route: Route }) {
  const { data: m, error } = useApi<any>(`/models/${encodeURIComponent(props.name)}`);
  const highlight = props.route.params.get("version");
  if (error) return <p class="error">{error.message}</p>;
  if (!m) return <p>loading…</p>;
  return (
    <section>
      <h2>Model {m.name}</h2>
      {m.description && <p>{m.description}</p>}
      <h3>Versions</h3>
      <table data-testid="model-versions">
        <thead>
          <tr>
            <th>version</th>
            <th>aliases</th>
            <th>status</th>
            <th>flavor</th>
            <th>run</th>
            <th>image</th>
            <th>created</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {m.versions.map((v: any) => (
            <tr class={highlight === String(v.version) ? "selected" : ""}>
              <td data-testid={`version-${v.version}`}>v{v.version}</td>
              <td>
                {v.aliases.map((a: string) => (
                  <span class="badge alias">{a}</span>
                ))}
              </td>
              <td>{v.status}</td>
              <td>{v.flavor}</td>
              <td>{v.run_id ? <a href={href(["runs", v.run_id])}>{short(v.run_id, 8)}</a> : "—"}</td>
              <td class="mono">{v.image_ref ?? short(v.image_digest)}</td>
              <td>{when(v.created_at)}</td>
              <td>
                <a href={lineageHref("model_version", v.ref)}>lineage</a>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {m.compare.length > 0 && <VersionCompare sides={m.compare} />}
      <h3>Alias history</h3>
      <table data-testid="alias-history">
        <thead>
          <tr>
            <th>when</th>
            <th>alias</th>
            <th>move</th>
            <th>by</th>
            <th>reason</th>
          </tr>
        </thead>
        <tbody>
          {m.alias_history.map((h: any) => (
            <tr>
              <td>{when(h.moved_at)}</td>
              <td>{h.alias}</td>
              <td>
                {h.from_version ? `v${h.from_version}` : "∅"} → {h.to_version ? `v${h.to_version}` : "removed"}
                {h.forced ? " (forced)" : ""}
              </td>
              <td>{h.actor ?? "—"}</td>
              <td>{h.reason ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// The newest versions side by side: what trained them, their image, today's gate verdicts and
// who promoted them; a row whose values differ between versions is highlighted.
function VersionCompare(props: { sides: any[] }) {
  const sides = props.sides;
  const keys = (field: string) => Array.from(new Set(sides.flatMap((s) => Object.keys(s[field])))).sort();
  const row = (label: string, cells: string[], testid?: string) => (
    <tr class={sides.length > 1 && new Set(cells).size > 1 ? "differs" : ""} data-row={testid ?? label}>
      <th>{label}</th>
      {cells.map((c) => (
        <td class="num">{c}</td>
      ))}
    </tr>
  );
  const gate = (g: any) =>
    g ? (g.passed ? "passes" : `fails: ${g.checks.filter((c: any) => !c.passed).map((c: any) => c.check).join(", ")}`) : "—";
  return (
    <>
      <h3>Versions side by side</h3>
      <div class="scroll">
        <table data-testid="version-compare">
          <thead>
            <tr>
              <th />
              {sides.map((s) => (
                <th class="num">
                  <a href={lineageHref("model_version", s.ref)}>v{s.version}</a>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {keys("metrics").map((k) => row(`metric ${k}`, sides.map((s) => num(s.metrics[k])), `metric:${k}`))}
            {keys("datasets").map((k) => row(`dataset ${k}`, sides.map((s) => s.datasets[k] ?? "—"), `dataset:${k}`))}
            {row("image", sides.map((s) => s.image ?? "—"))}
            {keys("gates").map((a) => row(`gate ${a}`, sides.map((s) => gate(s.gates[a])), `gate:${a}`))}
            {row(
              "promoted",
              sides.map((s) => s.promotions.map((p: any) => `${p.alias} by ${p.by ?? "unknown"} ${when(p.at)}${p.forced ? " (forced)" : ""}`).join("; ") || "—"),
            )}
          </tbody>
        </table>
      </div>
    </>
  );
}
