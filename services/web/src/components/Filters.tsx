/** Metadata filters as field = value rows; values are JSON when they parse (2024, true), else text. */
export interface FilterRow {
  field: string;
  value: string;
}

export type Scalar = string | number | boolean;

export function toFilter(rows: FilterRow[]): Record<string, Scalar> | undefined {
  const entries = rows
    .filter((r) => r.field.trim())
    .map((r) => [r.field.trim(), scalar(r.value)] as const);
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

function scalar(text: string): Scalar {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "number" || typeof value === "boolean" || typeof value === "string") {
      return value;
    }
  } catch {
    // Not JSON: the text itself.
  }
  return text;
}

export function Filters({
  rows,
  onChange,
}: {
  rows: FilterRow[];
  onChange: (rows: FilterRow[]) => void;
}) {
  const set = (i: number, change: Partial<FilterRow>) =>
    onChange(rows.map((r, j) => (j === i ? { ...r, ...change } : r)));
  return (
    <fieldset className="filters">
      <legend>Metadata filters (each field must equal its value)</legend>
      {rows.map((r, i) => (
        <div key={i} className="filter">
          <label>
            Field <input value={r.field} onChange={(e) => set(i, { field: e.target.value })} />
          </label>
          <label>
            Value <input value={r.value} onChange={(e) => set(i, { value: e.target.value })} />
          </label>
          <button
            type="button"
            className="quiet"
            onClick={() => onChange(rows.filter((_, j) => j !== i))}
          >
            Remove filter {i + 1}
          </button>
        </div>
      ))}
      <button type="button" onClick={() => onChange([...rows, { field: "", value: "" }])}>
        Add a filter
      </button>
    </fieldset>
  );
}
