// Package browsertest runs the approvers' web console (internal/approval/console) in Debian's
// Chromium against a real agentauthz server, through chromedp.
//
// It is a module of its own, so that chromedp and the Chrome DevTools protocol stay out of the
// main module's dependencies. With CI set in the environment the test fails, rather than skips,
// when Chromium is not installed.
package browsertest
