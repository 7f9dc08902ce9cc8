//! `repobox web` as a process against a test-kit `redis-server`: every page
//! and action over HTTP (`http`), and the live parts in headless Chromium
//! driven through chromedriver (`browser`).

mod browser;
mod http;
mod kit;
