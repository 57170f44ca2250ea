// Builds the dashboard into the Python package (src/modelyard/server/static), where the
// server serves it at /ui/ — so the installed package needs neither node nor a CDN.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "../src/modelyard/server/static",
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 400,
  },
});
