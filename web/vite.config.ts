import { defineConfig, type Plugin } from "vite";
import react from "@vitejs/plugin-react";
import { readdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";

// The build goes where internal/console embeds it. The directory keeps a
// committed placeholder (.gitkeep) so that Go's embed works before the first
// build; Vite's own emptyOutDir would delete it, so this plugin clears
// everything else instead.
const outDir = fileURLToPath(new URL("../internal/console/dist", import.meta.url));

function cleanKeepingPlaceholder(): Plugin {
  return {
    name: "bulkhead-clean-dist",
    apply: "build",
    buildStart() {
      for (const name of readdirSync(outDir)) {
        if (name !== ".gitkeep") rmSync(`${outDir}/${name}`, { recursive: true, force: true });
      }
    },
  };
}

export default defineConfig({
  plugins: [react(), cleanKeepingPlaceholder()],
  build: {
    outDir,
    emptyOutDir: false,
    // The manager's CSP forbids inline scripts and data: scripts; keep every
    // asset a file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1000,
  },
});
