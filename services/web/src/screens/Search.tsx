import { useState } from "react";
import { api, call, type Problem, type Schemas } from "../api/client";
import { Empty } from "../components/Empty";
import { type FilterRow, Filters, toFilter } from "../components/Filters";
import { ProblemView } from "../components/ProblemView";
import { Scope } from "../components/Scope";
import { useCollections } from "./Collections";

type Hit = Schemas["Hit"];

export function Search() {
  const { names } = useCollections();
  const [query, setQuery] = useState("");
  const [topK, setTopK] = useState(5);
  const [collection, setCollection] = useState("default");
  const [filters, setFilters] = useState<FilterRow[]>([]);
  const [hits, setHits] = useState<Hit[] | null>(null);
  const [cached, setCached] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async () => {
    setBusy(true);
    const filter = toFilter(filters);
    const r = await call(
      api.POST("/v1/search", {
        body: { query, top_k: topK, collection, ...(filter ? { filter } : {}) },
      }),
    );
    setBusy(false);
    if (r.ok) {
      setHits(r.data.hits);
      setCached(r.data.cached);
      setProblem(null);
    } else {
      setProblem(r.problem);
    }
  };

  return (
    <section>
      <h1>Search</h1>
      <form
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          void run();
        }}
      >
        <label htmlFor="query">Search the documents</label>
        <input
          id="query"
          type="search"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          placeholder="renewal terms"
        />
        <Scope
          collections={names}
          collection={collection}
          onCollection={setCollection}
          topK={topK}
          onTopK={setTopK}
          topKLabel="Results"
        />
        <Filters rows={filters} onChange={setFilters} />
        <button type="submit" disabled={busy}>
          {busy ? "Searching…" : "Search"}
        </button>
      </form>
      <ProblemView problem={problem} />
      {hits && hits.length === 0 && (
        <Empty title="Nothing matched.">
          Try other words, remove a filter, or upload documents on the Documents screen.
        </Empty>
      )}
      {hits && hits.length > 0 && (
        <>
          <p className="muted">
            {hits.length} results{cached ? " (from the cache)" : ""}
          </p>
          <ol className="hits">
            {hits.map((h) => (
              <HitView key={`${h.document_id}#${h.chunk}`} hit={h} />
            ))}
          </ol>
        </>
      )}
    </section>
  );
}

export function HitView({ hit }: { hit: Hit }) {
  return (
    <li className="hit">
      <p className="source">
        <code>{hit.document_id}</code> · chunk {hit.chunk}
        {hit.page != null ? ` · page ${hit.page}` : ""} · score {hit.score.toFixed(3)}
      </p>
      <blockquote>{hit.text}</blockquote>
    </li>
  );
}
