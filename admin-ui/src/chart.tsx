// A uPlot time-series chart that follows its container's width and the page's colour scheme.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: Array<number | null>;
}

const COLORS = ["#ea580c", "#2563eb", "#16a34a", "#9333ea", "#dc2626", "#0891b2"];

export function TimeChart(props: { title: string; t: number[]; series: Series[]; unit?: string; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = props.series.map((s) => s.label).join("|");

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#cbd5e1" : "#334155", grid: { stroke: dark ? "#334155" : "#e2e8f0" } };
    const opts: uPlot.Options = {
      width: el.clientWidth || 400,
      height: props.height ?? 180,
      legend: { show: true },
      axes: [axis, { ...axis, values: (_u, v) => v.map((x) => `${x}${props.unit ?? ""}`) }],
      series: [
        {},
        ...props.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false })),
      ],
    };
    plot.current = new uPlot(opts, [props.t, ...props.series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth, height: props.height ?? 180 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    plot.current?.setData([props.t, ...props.series.map((s) => s.values)] as uPlot.AlignedData);
  }, [props.t, props.series]);

  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={props.title} />
    </figure>
  );
}

/** Bars over categories (usage by day, user or model), as a stepped uPlot. */
export function BarChart(props: { title: string; labels: string[]; series: Series[] }) {
  const t = props.labels.map((_, i) => i);
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || !props.labels.length) return;
    const bars = uPlot.paths.bars!({ size: [0.6, 60] });
    const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    const axis = { stroke: dark ? "#cbd5e1" : "#334155", grid: { stroke: dark ? "#334155" : "#e2e8f0" } };
    const u = new uPlot(
      {
        width: el.clientWidth || 400,
        height: 200,
        scales: { x: { time: false } },
        axes: [{ ...axis, values: (_u, v) => v.map((i) => props.labels[i] ?? "") }, axis],
        series: [
          {},
          ...props.series.map((s, i) => ({ label: s.label, fill: COLORS[i % COLORS.length] + "cc", stroke: COLORS[i % COLORS.length], paths: bars })),
        ],
      },
      [t, ...props.series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    return () => u.destroy();
  }, [props.labels.join("|"), JSON.stringify(props.series)]);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={props.title} />
    </figure>
  );
}
