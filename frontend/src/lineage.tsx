// The lineage graph: dagre lays the nodes out top (upstream) to bottom (downstream), SVG draws
// them; clicking a node re-centres the graph on it and shows where its page is.
import dagre from "@dagrejs/dagre";
import { useMemo } from "preact/hooks";
import { href, navigate } from "./router";
import { useApi } from "./util";

export interface LineageNode {
  type: string;
  id: string;
  label: string;
  level: number;
}

const TYPE_COLORS: Record<string, string> = {
  dataset_version: "#16a34a",
  run: "#2563eb",
  artifact: "#64748b",
  model_version: "#7c3aed",
  image: "#0891b2",
  deployment: "#d97706",
  monitor_report: "#dc2626",
};

const TYPE_TITLES: Record<string, string> = {
  dataset_version: "dataset",
  run: "run",
  artifact: "artifact",
  model_version: "model",
  image: "image",
  deployment: "deployment",
  monitor_report: "monitor report",
};

// Where a node's own page is, if it has one.
export function pageOf(type: string, id: string): string | null {
  const at = id.lastIndexOf("@");
  switch (type) {
    case "run":
      return href(["runs", id]);
    case "dataset_version":
      return at > 0 ? href(["datasets", id.slice(0, at), id.slice(at + 1)]) : null;
    case "model_version":
      return at > 0 ? href(["models", id.slice(0, at)], { version: id.slice(at + 1) }) : null;
    case "deployment":
      return href(["deployments", id]);
    case "monitor_report":
      return href(["monitoring"], { report: id });
    default:
      return null;
  }
}

export function lineageHref(type: string, id: string): string {
  return href(["lineage", type, id]);
}

const W = 210;
const H = 46;

function wrap(label: string, max = 30): string[] {
  const words = label.split(" ");
  const lines: string[] = [""];
  for (const w of words) {
    const last = lines[lines.length - 1];
    if ((last + " " + w).trim().length > max && last) lines.push(w);
    else lines[lines.length - 1] = (last + " " + w).trim();
  }
  return lines.slice(0, 2).map((l, i, all) => (i === 1 && all.length === 2 && lines.length > 2 ? l + " …" : l));
}

export function LineagePage(props: { type: string; id: string }) {
  const { data, error, loading } = useApi<any>("/lineage", { type: props.type, id: props.id });
  const layout = useMemo(() => {
    if (!data) return null;
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 24, ranksep: 44, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of data.nodes as LineageNode[]) g.setNode(`${n.type}:${n.id}`, { width: W, height: H });
    for (const e of data.edges) g.setEdge(e.source, e.target, { relation: e.relation });
    dagre.layout(g);
    return g;
  }, [data]);
  if (error) return <p class="error">{error.message}</p>;
  if (loading || !data || !layout) return <p>loading…</p>;
  const root = `${props.type}:${props.id}`;
  const graph = layout.graph();
  const rootNode = (data.nodes as LineageNode[]).find((n) => `${n.type}:${n.id}` === root)!;
  const page = pageOf(props.type, props.id);
  return (
    <section>
      <h2>Lineage</h2>
      <div class="panel" data-testid="lineage-focus">
        <span class="badge" style={{ background: TYPE_COLORS[props.type] ?? "#475569" }}>{TYPE_TITLES[props.type] ?? props.type}</span>{" "}
        <strong>{rootNode?.label ?? props.id}</strong>{" "}
        {page && (
          <a class="button" href={page} data-testid="open-page">
            open page →
          </a>
        )}
        <p class="muted">
          {data.nodes.length} nodes, {data.edges.length} arrows; upstream above, downstream below. Click a node
          to centre the graph on it.{data.truncated ? " (truncated: the graph goes further)" : ""}
        </p>
      </div>
      <div class="graph">
        <svg width={(graph.width ?? 0) + 20} height={(graph.height ?? 0) + 20} role="img" aria-label="lineage graph">
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
              <path d="M0,0 L10,5 L0,10 z" fill="#94a3b8" />
            </marker>
          </defs>
          {layout.edges().map((e) => {
            const edge = layout.edge(e) as any;
            const pts: { x: number; y: number }[] = edge.points ?? [];
            const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
            const mid = pts[Math.floor(pts.length / 2)];
            return (
              <g key={`${e.v}->${e.w}`}>
                <path d={d} fill="none" stroke="#94a3b8" stroke-width="1.5" marker-end="url(#arrow)" />
                {mid && (
                  <text x={mid.x} y={mid.y - 4} class="edge-label">
                    {edge.relation}
                  </text>
                )}
              </g>
            );
          })}
          {(data.nodes as LineageNode[]).map((n) => {
            const key = `${n.type}:${n.id}`;
            const pos = layout.node(key);
            const color = TYPE_COLORS[n.type] ?? "#475569";
            const lines = wrap(n.label);
            return (
              <g
                key={key}
                class={`node${key === root ? " root" : ""}`}
                data-node={key}
                data-type={n.type}
                transform={`translate(${pos.x - W / 2},${pos.y - H / 2})`}
                onClick={() => navigate(["lineage", n.type, n.id])}
              >
                <title>{n.label}</title>
                <rect width={W} height={H} rx="6" fill="#fff" stroke={color} stroke-width={key === root ? 3 : 1.5} />
                <rect width="6" height={H} rx="3" fill={color} />
                {lines.map((line, i) => (
                  <text x="12" y={19 + i * 15} class="node-label">
                    {line}
                  </text>
                ))}
              </g>
            );
          })}
        </svg>
      </div>
    </section>
  );
}
