// How numbers and times read on the dashboard.

export function num(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function bytes(n: number | null | undefined): string {
  if (!n) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function joules(j: number | null | undefined): string {
  if (j === null || j === undefined) return "–";
  if (j >= 3.6e6) return `${(j / 3.6e6).toFixed(2)} kWh`;
  if (j >= 3600) return `${(j / 3600).toFixed(2)} Wh`;
  return `${j.toFixed(j < 10 ? 2 : 0)} J`;
}

export function when(unix: number | null | undefined): string {
  if (!unix) return "–";
  return new Date(unix * 1000).toLocaleString();
}

export function limit(n: number | null | undefined): string {
  return n === null || n === undefined ? "unlimited" : num(n);
}
