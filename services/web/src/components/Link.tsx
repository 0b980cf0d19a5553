import type { ReactNode } from "react";
import { BASE, navigate } from "../app/router";

/** A link to a screen: a real anchor (open in a new tab works), navigated in place. */
export function Link(props: { to: string; children: ReactNode; current?: boolean }) {
  return (
    <a
      href={BASE + props.to}
      aria-current={props.current ? "page" : undefined}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) {
          return;
        }
        e.preventDefault();
        navigate(props.to);
      }}
    >
      {props.children}
    </a>
  );
}
