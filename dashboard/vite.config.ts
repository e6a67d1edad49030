import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the admin API to a running control plane
// (TOLLGATE_CP_URL, default http://127.0.0.1:7400); the built app is served
// by the control plane itself on the same port as the API.
const cp = process.env.TOLLGATE_CP_URL ?? "http://127.0.0.1:7400";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", sourcemap: false },
  server: { proxy: { "/tollgate.admin.v1.": { target: cp, changeOrigin: true } } },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.tsx", "src/**/*.test.ts"],
    setupFiles: ["src/test-setup.ts"],
  },
});
