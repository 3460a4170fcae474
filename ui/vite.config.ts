import { defineConfig } from 'vitest/config';

// `base: './'` keeps asset URLs relative so that the same dist/ works when
// served from `/` by the daemon and when loaded by the Tauri webview.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
  },
  server: {
    // `npm run dev` proxies the admin API to a running node:
    //   UNDERSTUDY_NODE=https://127.0.0.1:7443 npm run dev
    proxy: process.env.UNDERSTUDY_NODE
      ? { '/api': { target: process.env.UNDERSTUDY_NODE, changeOrigin: true, secure: false } }
      : undefined,
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.ts'],
  },
});
