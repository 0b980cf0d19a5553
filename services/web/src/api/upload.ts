// File uploads with progress. fetch cannot report an upload's progress, so
// this one call goes through XMLHttpRequest; its path and answer are still
// the generated schema's.
import { localProblem, readProblem, type Problem } from "./client";
import type { paths } from "./schema";
import { credential, signOut } from "./session";

type Ingested =
  paths["/v1/documents"]["post"]["responses"]["201"]["content"]["application/json"];

const PATH: keyof paths = "/v1/documents";

/** Upload one file into `collection`; `onProgress` gets 0..1 as it is sent. */
export function uploadFile(
  file: File,
  collection: string,
  onProgress: (fraction: number) => void,
): Promise<{ ok: true; data: Ingested } | { ok: false; problem: Problem }> {
  const form = new FormData();
  form.append("collection", collection);
  form.append("file", file, file.name);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", PATH);
    const token = credential();
    if (token) {
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) {
        onProgress(e.loaded / e.total);
      }
    };
    xhr.onerror = () =>
      resolve({
        ok: false,
        problem: localProblem("network_error", "The upload did not reach the server."),
      });
    xhr.onload = async () => {
      const response = new Response(xhr.status === 204 ? null : xhr.responseText, {
        status: xhr.status,
        statusText: xhr.statusText,
        headers: parseHeaders(xhr.getAllResponseHeaders()),
      });
      if (xhr.status === 201) {
        onProgress(1);
        resolve({ ok: true, data: (await response.json()) as Ingested });
        return;
      }
      const problem = await readProblem(response);
      if (xhr.status === 401) {
        signOut(problem.detail);
      }
      resolve({ ok: false, problem });
    };
    xhr.send(form);
  });
}

function parseHeaders(raw: string): Headers {
  const headers = new Headers();
  for (const line of raw.trim().split(/[\r\n]+/)) {
    const at = line.indexOf(":");
    if (at > 0) {
      headers.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
    }
  }
  return headers;
}
