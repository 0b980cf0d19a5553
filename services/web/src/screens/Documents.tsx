import { useCallback, useEffect, useRef, useState } from "react";
import { api, call, localProblem, type Problem, type Schemas } from "../api/client";
import { uploadFile } from "../api/upload";
import { Empty } from "../components/Empty";
import { bytes, when } from "../components/format";
import { Pager, useCursors } from "../components/Pager";
import { ProblemView } from "../components/ProblemView";
import { useCollections } from "./Collections";

const PAGE = 20;

type Listing = Schemas["DocumentPage"];
type Doc = Schemas["DocumentItem"];

interface Upload {
  key: string;
  name: string;
  progress: number;
  state: "sending" | "done" | "failed";
  detail: string;
  problem: Problem | null;
}

/** The tenant's documents: listing by pages, uploads, metadata, deletion. */
export function Documents() {
  const { names: collections } = useCollections();
  const [collection, setCollection] = useState("default");
  const pages = useCursors();
  const { cursor, reset } = pages;
  const [page, setPage] = useState<Listing | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [editing, setEditing] = useState<Doc | null>(null);

  const load = useCallback(async () => {
    const r = await call(
      api.GET("/v1/documents", {
        params: { query: { collection, limit: String(PAGE), ...(cursor ? { cursor } : {}) } },
      }),
    );
    if (r.ok) {
      setPage(r.data);
      setProblem(null);
    } else {
      setProblem(r.problem);
    }
  }, [collection, cursor]);

  useEffect(() => {
    void load();
  }, [load]);

  const send = async (files: File[]) => {
    const batch = files.map((f, i) => ({
      key: `${Date.now()}-${i}-${f.name}`,
      name: f.name,
      progress: 0,
      state: "sending" as const,
      detail: "",
      problem: null,
    }));
    setUploads((u) => [...batch, ...u]);
    const update = (key: string, change: Partial<Upload>) =>
      setUploads((u) => u.map((x) => (x.key === key ? { ...x, ...change } : x)));
    // One request per file: each file stands or fails on its own.
    for (const [i, file] of files.entries()) {
      const key = batch[i]?.key ?? "";
      const r = await uploadFile(file, collection, (p) => update(key, { progress: p }));
      if (r.ok) {
        update(key, {
          state: "done",
          progress: 1,
          detail: `stored as ${r.data.ids.join(", ")} (${r.data.chunks} chunks)`,
        });
      } else {
        update(key, { state: "failed", problem: r.problem });
      }
    }
    reset();
    await load();
  };

  const remove = async (doc: Doc) => {
    if (!window.confirm(`Delete ${label(doc)}? Its text and vectors are removed.`)) {
      return;
    }
    const r = await call(api.DELETE("/v1/documents/{id}", { params: { path: { id: doc.id } } }));
    if (r.ok) {
      await load();
    } else {
      setProblem(r.problem);
    }
  };

  return (
    <section>
      <h1>Documents</h1>
      <div className="toolbar">
        <label>
          Collection{" "}
          <select
            value={collection}
            onChange={(e) => {
              setCollection(e.target.value);
              reset();
            }}
          >
            {collections.map((c) => (
              <option key={c}>{c}</option>
            ))}
          </select>
        </label>
      </div>
      <Dropzone onFiles={(files) => void send(files)} />
      {uploads.length > 0 && (
        <ul className="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.key} className={u.state}>
              <span className="name">{u.name}</span>
              <progress max={1} value={u.progress} aria-label={`${u.name} sent`} />
              <span className="state">
                {u.state === "sending" ? `${Math.round(u.progress * 100)}%` : u.state}
              </span>
              {u.detail && <span className="detail">{u.detail}</span>}
              {u.problem && <ProblemView problem={u.problem} />}
            </li>
          ))}
        </ul>
      )}
      <ProblemView problem={problem} />
      {page && page.documents.length === 0 && pages.onFirst && (
        <Empty title={`No documents in ${collection} yet.`}>
          Upload PDF, Word, HTML, Markdown or text files above; then search them or ask for an
          analysis.
        </Empty>
      )}
      {page && page.documents.length > 0 && (
        <table className="documents">
          <thead>
            <tr>
              <th scope="col">Document</th>
              <th scope="col">Chunks</th>
              <th scope="col">Size</th>
              <th scope="col">Metadata</th>
              <th scope="col">Added</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {page.documents.map((doc) => (
              <tr key={doc.id}>
                <td>
                  <span className="title">{label(doc)}</span>
                  <br />
                  <code className="muted">{doc.id}</code>
                </td>
                <td className="num">{doc.chunks}</td>
                <td className="num">{bytes(doc.bytes)}</td>
                <td>
                  <code>{JSON.stringify(doc.metadata ?? {})}</code>
                </td>
                <td>{when(doc.created_at)}</td>
                <td className="actions">
                  <button type="button" onClick={() => setEditing(doc)}>
                    Metadata
                  </button>
                  <button type="button" className="danger" onClick={() => void remove(doc)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager pages={pages} nextCursor={page?.next_cursor} />
      {editing && (
        <MetadataEditor
          doc={editing}
          onClose={(changed) => {
            setEditing(null);
            if (changed) {
              void load();
            }
          }}
        />
      )}
    </section>
  );
}

function label(doc: Doc): string {
  return doc.file?.name ?? doc.id;
}

/** Files by picker or by drag and drop; the picker is the keyboard's way. */
function Dropzone({ onFiles }: { onFiles: (files: File[]) => void }) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  return (
    <div
      className={over ? "dropzone over" : "dropzone"}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const files = Array.from(e.dataTransfer.files);
        if (files.length > 0) {
          onFiles(files);
        }
      }}
    >
      <label htmlFor="files">Upload files (PDF, DOCX, HTML, Markdown, text)</label>
      <input
        ref={input}
        id="files"
        type="file"
        multiple
        onChange={(e) => {
          const files = Array.from(e.target.files ?? []);
          if (files.length > 0) {
            onFiles(files);
          }
          e.target.value = "";
        }}
      />
      <p className="hint">or drop them here</p>
    </div>
  );
}

function MetadataEditor({ doc, onClose }: { doc: Doc; onClose: (changed: boolean) => void }) {
  const [text, setText] = useState(JSON.stringify(doc.metadata ?? {}, null, 2));
  const [problem, setProblem] = useState<Problem | null>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const save = async () => {
    let metadata: Record<string, unknown>;
    try {
      metadata = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      setProblem(
        localProblem("malformed_json", `Not JSON: ${e instanceof Error ? e.message : String(e)}`),
      );
      return;
    }
    const r = await call(
      api.PATCH("/v1/documents/{id}", {
        params: { path: { id: doc.id } },
        body: { metadata } as never,
      }),
    );
    if (r.ok) {
      onClose(true);
    } else {
      setProblem(r.problem);
    }
  };
  return (
    <dialog ref={dialog} aria-labelledby="metadata-title" onClose={() => onClose(false)}>
      <h2 id="metadata-title">Metadata of {label(doc)}</h2>
      <label htmlFor="metadata">A JSON object; it replaces the metadata whole.</label>
      <textarea
        id="metadata"
        rows={8}
        value={text}
        spellCheck={false}
        onChange={(e) => setText(e.target.value)}
      />
      <ProblemView problem={problem} />
      <div className="buttons">
        <button type="button" onClick={() => void save()}>
          Save
        </button>
        <button type="button" className="quiet" onClick={() => onClose(false)}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}
