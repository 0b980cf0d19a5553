import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { takeFragment } from "./api/session";
import { App } from "./app/App";
import "./styles.css";

takeFragment();
const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
