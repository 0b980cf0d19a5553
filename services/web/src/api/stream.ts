// The events of `POST /v1/analyze` with `stream: true` (text/event-stream):
// `citations`, `delta`s whose text concatenates to the answer, then `done`,
// or `error` carrying a problem. Typed by the generated schema.
import { api, call, type Problem, type Schemas } from "./client";

export type AnalyzeEvent =
  | { event: "citations"; data: Schemas["CitationsEvent"] }
  | { event: "delta"; data: Schemas["DeltaEvent"] }
  | { event: "done"; data: Schemas["DoneEvent"] }
  | { event: "error"; data: Schemas["Problem"] };

/**
 * Ask for an analysis and hand each event to `onEvent` as it arrives.
 * Resolves with the problem when the request is refused before streaming.
 */
export async function analyzeStream(
  body: Omit<Schemas["AnalyzeRequest"], "stream">,
  onEvent: (event: AnalyzeEvent) => void,
  signal?: AbortSignal,
): Promise<Problem | null> {
  const result = await call(
    api.POST("/v1/analyze", {
      body: { ...body, stream: true },
      parseAs: "stream",
      headers: { Accept: "text/event-stream" },
      signal,
    }),
  );
  if (!result.ok) {
    return result.problem;
  }
  const stream = result.data as unknown as ReadableStream<Uint8Array> | null;
  if (!stream) {
    return null;
  }
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      break;
    }
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const event = parseBlock(block);
      if (event) {
        onEvent(event);
      }
    }
  }
  return null;
}

function parseBlock(block: string): AnalyzeEvent | null {
  let name = "message";
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith("event:")) {
      name = line.slice(6).trim();
    } else if (line.startsWith("data:")) {
      data.push(line.slice(5).replace(/^ /, ""));
    }
  }
  if (data.length === 0) {
    return null;
  }
  try {
    const parsed: unknown = JSON.parse(data.join("\n"));
    if (name === "citations" || name === "delta" || name === "done" || name === "error") {
      return { event: name, data: parsed } as AnalyzeEvent;
    }
  } catch {
    return null;
  }
  return null;
}
