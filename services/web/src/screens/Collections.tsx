import { useCallback, useEffect, useState } from "react";
import { api, call, type Problem, type Schemas } from "../api/client";
import { bytes, when } from "../components/format";
import { ProblemView } from "../components/ProblemView";

type Collection = Schemas["CollectionView"];

/** The tenant's collections (with `default` always there), for pickers. */
export function useCollections() {
  const [list, setList] = useState<Collection[]>([]);
  const [problem, setProblem] = useState<Problem | null>(null);
  const reload = useCallback(async () => {
    const r = await call(api.GET("/v1/collections"));
    if (r.ok) {
      setList(r.data.collections);
      setProblem(null);
    } else {
      setProblem(r.problem);
    }
  }, []);
  useEffect(() => {
    void reload();
  }, [reload]);
  const names = list.length > 0 ? list.map((c) => c.name) : ["default"];
  return { list, names, problem, reload };
}

export function Collections() {
  const { list, problem: listed, reload } = useCollections();
  const [name, setName] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);

  const create = async () => {
    const r = await call(api.POST("/v1/collections", { body: { name } }));
    if (r.ok) {
      setName("");
      setProblem(null);
      await reload();
    } else {
      setProblem(r.problem);
    }
  };
  const remove = async (c: Collection) => {
    if (
      !window.confirm(
        `Delete the collection ${c.name} with its ${c.documents} documents? This cannot be undone.`,
      )
    ) {
      return;
    }
    const r = await call(
      api.DELETE("/v1/collections/{name}", { params: { path: { name: c.name } } }),
    );
    if (r.ok) {
      await reload();
    } else {
      setProblem(r.problem);
    }
  };

  return (
    <section>
      <h1>Collections</h1>
      <p className="hint">
        Documents live in collections; searches and analyses look in one at a time.
      </p>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <label htmlFor="collection-name">New collection</label>
        <input
          id="collection-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="contracts-2026"
          required
        />
        <button type="submit">Create</button>
      </form>
      <ProblemView problem={problem ?? listed} />
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Documents</th>
            <th scope="col">Chunks</th>
            <th scope="col">Text</th>
            <th scope="col">Vectors</th>
            <th scope="col">Created</th>
            <th scope="col">
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {list.map((c) => (
            <tr key={c.name}>
              <td>{c.name}</td>
              <td className="num">{c.documents}</td>
              <td className="num">{c.chunks}</td>
              <td className="num">{bytes(c.bytes)}</td>
              <td className="num">{bytes(c.vector_bytes)}</td>
              <td>{when(c.created_at)}</td>
              <td className="actions">
                {c.name !== "default" && (
                  <button type="button" className="danger" onClick={() => void remove(c)}>
                    Delete
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
