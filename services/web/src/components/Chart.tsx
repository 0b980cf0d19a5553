// A bar chart in SVG (no chart library: a few hundred bytes instead of a
// hundred kilobytes), with the numbers also in a table for screen readers.

export interface Point {
  label: string;
  value: number;
}

export function BarChart({ title, points }: { title: string; points: Point[] }) {
  const width = 640;
  const height = 160;
  const max = Math.max(1, ...points.map((p) => p.value));
  const step = points.length > 0 ? width / points.length : width;
  const total = points.reduce((sum, p) => sum + p.value, 0);
  return (
    <figure className="chart">
      <figcaption>
        {title} <span className="muted">(total {total.toLocaleString()})</span>
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${height + 20}`}
        role="img"
        aria-label={`${title}: ${points.length} bars, largest ${max.toLocaleString()}`}
      >
        <line x1="0" y1={height} x2={width} y2={height} className="axis" />
        {points.map((p, i) => {
          const h = (p.value / max) * (height - 10);
          return (
            <rect
              key={p.label}
              x={i * step + step * 0.1}
              y={height - h}
              width={Math.max(1, step * 0.8)}
              height={h}
              className="bar"
            >
              <title>{`${p.label}: ${p.value.toLocaleString()}`}</title>
            </rect>
          );
        })}
        {points.length > 0 && points.length <= 12 &&
          points.map((p, i) => (
            <text
              key={p.label}
              x={i * step + step / 2}
              y={height + 16}
              className="tick"
              textAnchor="middle"
            >
              {p.label}
            </text>
          ))}
        {points.length > 12 && (
          <>
            <text x="0" y={height + 16} className="tick">
              {points[0]?.label}
            </text>
            <text x={width} y={height + 16} className="tick" textAnchor="end">
              {points[points.length - 1]?.label}
            </text>
          </>
        )}
      </svg>
      <details>
        <summary>As a table</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">{title}</th>
            </tr>
          </thead>
          <tbody>
            {points.map((p) => (
              <tr key={p.label}>
                <td>{p.label}</td>
                <td className="num">{p.value.toLocaleString()}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}
