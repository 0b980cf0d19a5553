import { useEffect, useRef, useState } from "react";
import { api, call, localProblem, type Problem, type Schemas } from "../api/client";
import { analyzeStream } from "../api/stream";
import { ProblemView } from "../components/ProblemView";
import { Scope } from "../components/Scope";
import { useCollections } from "./Collections";
import { HitView } from "./Search";

type Citation = Schemas["CitationsEvent"]["citations"][number];

export function Analyze() {
  const { names } = useCollections();
  const [question, setQuestion] = useState("");
  const [collection, setCollection] = useState("default");
  const [topK, setTopK] = useState(5);
  const [answer, setAnswer] = useState("");
  const [citations, setCitations] = useState<Citation[]>([]);
  const [done, setDone] = useState<Schemas["DoneEvent"] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [streaming, setStreaming] = useState(false);
  const [asked, setAsked] = useState<{ question: string; collection: string; topK: number } | null>(
    null,
  );
  const [open, setOpen] = useState<Citation | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => () => abort.current?.abort(), []);

  const ask = async () => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    setAnswer("");
    setCitations([]);
    setDone(null);
    setProblem(null);
    setOpen(null);
    setStreaming(true);
    setAsked({ question, collection, topK });
    try {
      const refused = await analyzeStream(
        { question, collection, top_k: topK },
        (e) => {
          switch (e.event) {
            case "citations":
              setCitations(e.data.citations);
              break;
            case "delta":
              setAnswer((a) => a + e.data.text);
              break;
            case "done":
              setDone(e.data);
              break;
            case "error":
              setProblem(
                localProblem(
                  e.data.code ?? "error",
                  e.data.detail ?? "the analysis failed",
                  e.data.status ?? 500,
                ),
              );
              break;
          }
        },
        controller.signal,
      );
      if (refused) {
        setProblem(refused);
      }
    } catch (e) {
      if (!controller.signal.aborted) {
        setProblem(
          localProblem(
            "stream_broken",
            `The answer stopped arriving: ${e instanceof Error ? e.message : String(e)}`,
          ),
        );
      }
    } finally {
      setStreaming(false);
    }
  };

  return (
    <section>
      <h1>Analyze</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void ask();
        }}
      >
        <label htmlFor="question">Question</label>
        <textarea
          id="question"
          rows={3}
          value={question}
          onChange={(e) => setQuestion(e.target.value)}
          placeholder="What are the renewal terms, and when do they apply?"
        />
        <Scope
          collections={names}
          collection={collection}
          onCollection={setCollection}
          topK={topK}
          onTopK={setTopK}
          topKLabel="Sources"
        />
        <button type="submit" disabled={streaming || !question.trim()}>
          {streaming ? "Answering…" : "Ask"}
        </button>
        {streaming && (
          <button type="button" className="quiet" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        )}
      </form>
      <ProblemView problem={problem} />
      {(answer || streaming) && (
        <article className="answer" aria-live="polite" aria-busy={streaming}>
          <h2>Answer</h2>
          <p data-testid="answer">{answer || "…"}</p>
          {done && (
            <p className="muted">
              {done.model} · {done.usage.total_tokens} tokens
            </p>
          )}
        </article>
      )}
      {citations.length > 0 && asked && (
        <section aria-labelledby="citations-title">
          <h2 id="citations-title">Citations</h2>
          <ol className="citations">
            {citations.map((c, i) => (
              <li key={`${c.document_id}#${c.chunk}`}>
                <button type="button" className="link" onClick={() => setOpen(c)}>
                  [{i + 1}] {c.document_id} · chunk {c.chunk}
                </button>{" "}
                <span className="muted">score {c.score.toFixed(3)}</span>
              </li>
            ))}
          </ol>
        </section>
      )}
      {open && asked && <CitedChunk citation={open} asked={asked} onClose={() => setOpen(null)} />}
    </section>
  );
}

/**
 * The cited chunk's text. An analysis cites chunks of its retrieval; the
 * same search (question, collection, top_k) returns them with their text,
 * usually from the query cache.
 */
function CitedChunk(props: {
  citation: Citation;
  asked: { question: string; collection: string; topK: number };
  onClose: () => void;
}) {
  const { citation, asked, onClose } = props;
  const dialog = useRef<HTMLDialogElement>(null);
  const [hit, setHit] = useState<Schemas["Hit"] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    dialog.current?.showModal();
    void (async () => {
      const r = await call(
        api.POST("/v1/search", {
          body: { query: asked.question, collection: asked.collection, top_k: asked.topK },
        }),
      );
      if (!r.ok) {
        setProblem(r.problem);
        return;
      }
      const found = r.data.hits.find(
        (h) => h.document_id === citation.document_id && h.chunk === citation.chunk,
      );
      if (found) {
        setHit(found);
      } else {
        setProblem(
          localProblem(
            "not_found",
            "This chunk is no longer among the results: the document changed since.",
            404,
          ),
        );
      }
    })();
  }, [citation, asked]);
  return (
    <dialog ref={dialog} aria-labelledby="cited-title" onClose={onClose}>
      <h2 id="cited-title">
        {citation.document_id} · chunk {citation.chunk}
      </h2>
      <ProblemView problem={problem} />
      {hit ? (
        <ol className="hits">
          <HitView hit={hit} />
        </ol>
      ) : (
        !problem && <p>Loading…</p>
      )}
      <button type="button" onClick={onClose}>
        Close
      </button>
    </dialog>
  );
}
