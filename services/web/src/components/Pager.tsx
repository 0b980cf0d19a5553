import { useState } from "react";

/**
 * Cursor paging: the cursors of the pages seen so far, so that "back"
 * returns to the page before. `cursor` is the current page's (undefined
 * for the first).
 */
export function useCursors() {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  return {
    cursor: cursors[cursors.length - 1],
    onFirst: cursors.length <= 1,
    next: (cursor: string) => setCursors((c) => [...c, cursor]),
    back: () => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)),
    reset: () => setCursors([undefined]),
  };
}

export function Pager(props: {
  pages: ReturnType<typeof useCursors>;
  nextCursor: string | null | undefined;
  labels?: [string, string];
}) {
  const { pages, nextCursor } = props;
  const [back, next] = props.labels ?? ["Previous page", "Next page"];
  return (
    <div className="pager">
      <button type="button" disabled={pages.onFirst} onClick={pages.back}>
        {back}
      </button>
      <button
        type="button"
        disabled={!nextCursor}
        onClick={() => nextCursor && pages.next(nextCursor)}
      >
        {next}
      </button>
    </div>
  );
}
