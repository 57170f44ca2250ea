// A thin uPlot wrapper: several named series over one x axis (steps or times).
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563", "#65a30d", "#9333ea"];

export interface Series {
  label: string;
  points: [number, number | null][];
}

export function align(series: Series[]): uPlot.AlignedData {
  const xs = Array.from(new Set(series.flatMap((s) => s.points.map((p) => p[0])))).sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const column: (number | null)[] = new Array(xs.length).fill(null);
    for (const [x, y] of s.points) column[index.get(x)!] = y;
    return column;
  });
  return [xs, ...columns] as uPlot.AlignedData;
}

export function LineChart(props: { title: string; series: Series[]; time?: boolean; height?: number }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!host.current) return;
    const width = Math.max(280, host.current.clientWidth || 480);
    const plot = new uPlot(
      {
        title: props.title,
        width,
        height: props.height ?? 220,
        scales: {
          // One x value would get uPlot's default 0–100 axis: centre the axis on it instead.
          x: { time: !!props.time, range: (_u, min, max) => (min === max ? [min - (props.time ? 60 : 1), max + (props.time ? 60 : 1)] : [min, max]) },
        },
        series: [
          { label: props.time ? "time" : "step" },
          ...props.series.map((s, i) => ({
            label: s.label,
            stroke: COLORS[i % COLORS.length],
            width: 2,
            spanGaps: true,
            points: { show: true, size: 5 },
          })),
        ],
      },
      align(props.series),
      host.current,
    );
    return () => plot.destroy();
  }, [props.title, JSON.stringify(props.series)]);
  return <div class="chart" ref={host} data-chart={props.title} />;
}
