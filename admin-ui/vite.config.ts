import { defineConfig } from "vite";

// Plain Vite: TSX compiled with Preact's automatic JSX runtime (tsconfig), no plugins. The output is embedded in
// the hearth binary, so it must not need anything at run time beyond this origin (CSP: script-src 'self').
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: Object.fromEntries(
      ["/auth", "/admin", "/v1", "/api", "/metrics"].map((p) => [p, "http://127.0.0.1:8383"]),
    ),
  },
});
