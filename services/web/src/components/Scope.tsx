/** Where a search or an analysis looks: the collection, and how many chunks. */
export function Scope(props: {
  collections: string[];
  collection: string;
  onCollection: (name: string) => void;
  topK: number;
  onTopK: (n: number) => void;
  topKLabel: string;
}) {
  return (
    <div className="row">
      <label>
        Collection{" "}
        <select value={props.collection} onChange={(e) => props.onCollection(e.target.value)}>
          {props.collections.map((c) => (
            <option key={c}>{c}</option>
          ))}
        </select>
      </label>
      <label>
        {props.topKLabel}{" "}
        <input
          type="number"
          min={1}
          max={100}
          value={props.topK}
          onChange={(e) => props.onTopK(Number(e.target.value))}
        />
      </label>
    </div>
  );
}
