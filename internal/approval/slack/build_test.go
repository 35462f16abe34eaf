package slack

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/agentauthz/agentauthz/internal/approval/notify"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

func slackNotifierConfig(name string, s *policyv1.SlackNotifier) *policyv1.Notifier {
	return &policyv1.Notifier{Name: name, Kind: &policyv1.Notifier_Slack{Slack: s}}
}

func webhookNotifierConfig(name, url, env string) *policyv1.Notifier {
	return &policyv1.Notifier{Name: name, Kind: &policyv1.Notifier_Webhook{Webhook: &policyv1.WebhookNotifier{Url: url, SecretEnv: env}}}
}

// TestBuilderLoadsFromPolicy: a policy's Slack notifiers, built by a Dispatcher, beside a
// webhook; kept across reloads until their configuration or a secret changes.
func TestBuilderLoadsFromPolicy(t *testing.T) {
	env := map[string]string{
		"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "shh", "SLACK_HOOK": "https://hooks.example.com/T/B/x",
		"HOOK_SECRET": "s3cret",
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	d := notify.NewDispatcher(notify.DispatcherConfig{Getenv: getenv, Slack: Builder("")})
	defer d.Close(context.Background())
	cfgs := []*policyv1.Notifier{
		slackNotifierConfig("ops-slack", &policyv1.SlackNotifier{Channel: "C024BE91L", BotTokenEnv: "SLACK_BOT_TOKEN", SigningSecretEnv: "SLACK_SIGNING_SECRET"}),
		slackNotifierConfig("hook-slack", &policyv1.SlackNotifier{WebhookUrlEnv: "SLACK_HOOK"}),
		webhookNotifierConfig("siem", "https://siem.example.com/hook", "HOOK_SECRET"),
	}
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"hook-slack", "ops-slack", "siem"}, d.Names()); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if !Any(d.Notifiers()) || !cmp.Equal(SigningSecrets(d.Notifiers()), []string{"shh"}) {
		t.Errorf("Any %v, secrets %q", Any(d.Notifiers()), SigningSecrets(d.Notifiers()))
	}
	inForce := func() map[string]notify.Notifier {
		m := map[string]notify.Notifier{}
		for _, n := range d.Notifiers() {
			m[n.Name()] = n
		}
		return m
	}
	before := inForce()
	if _, ok := before["ops-slack"].(*Notifier); !ok {
		t.Fatalf("ops-slack is a %T", before["ops-slack"])
	}

	// The same policy again (a reload): every notifier is kept, with the Slack messages it can
	// still update.
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	for name, n := range inForce() {
		if before[name] != n {
			t.Errorf("%s: replaced by reloading the same policy", name)
		}
	}
	// A changed secret replaces that notifier only.
	env["SLACK_SIGNING_SECRET"] = "rotated"
	if err := d.Load(cfgs); err != nil {
		t.Fatal(err)
	}
	for name, n := range inForce() {
		if kept := before[name] == n; kept != (name != "ops-slack") {
			t.Errorf("%s: kept=%v after reload", name, kept)
		}
	}
	if got := SigningSecrets(d.Notifiers()); !cmp.Equal(got, []string{"rotated"}) {
		t.Errorf("secrets after rotation %q", got)
	}

	// A missing variable fails the load, names the variable, and changes nothing.
	delete(env, "SLACK_SIGNING_SECRET")
	delete(env, "HOOK_SECRET")
	err := d.Load(cfgs)
	if err == nil || !strings.Contains(err.Error(), "SLACK_SIGNING_SECRET") || !strings.Contains(err.Error(), "HOOK_SECRET") ||
		!strings.Contains(err.Error(), `notifier "siem"`) || !strings.Contains(err.Error(), `notifier "ops-slack"`) {
		t.Errorf("Load with missing variables: %v", err)
	}
	if len(d.Names()) != 3 {
		t.Errorf("a failed Load changed the notifiers: %q", d.Names())
	}
	if err := d.Load(nil); err != nil || len(d.Names()) != 0 || Any(d.Notifiers()) || SigningSecrets(d.Notifiers()) != nil {
		t.Errorf("Load(nil): %v, %q", err, d.Names())
	}
}

func TestBuilderRefusesBadConfigs(t *testing.T) {
	getenv := func(k string) (string, bool) { return "value-of-" + k, true }
	for _, tc := range []struct {
		cfg  *policyv1.SlackNotifier
		want string
	}{
		{&policyv1.SlackNotifier{}, "bot_token_env"},
		{&policyv1.SlackNotifier{BotTokenEnv: "T"}, "channel is required"},
		{&policyv1.SlackNotifier{Channel: "C1", BotTokenEnv: "T", WebhookUrlEnv: "U"}, "not both"},
		{&policyv1.SlackNotifier{WebhookUrlEnv: "U"}, "https"}, // "value-of-U" is no URL
	} {
		d := notify.NewDispatcher(notify.DispatcherConfig{Getenv: getenv, Slack: Builder("")})
		err := d.Load([]*policyv1.Notifier{slackNotifierConfig("s", tc.cfg)})
		d.Close(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	d := notify.NewDispatcher(notify.DispatcherConfig{Getenv: getenv, Slack: Builder("")})
	defer d.Close(context.Background())
	if err := d.Load([]*policyv1.Notifier{slackNotifierConfig("s", &policyv1.SlackNotifier{Channel: "C1", BotTokenEnv: "T"})}); err != nil {
		t.Errorf("a bot token and a channel: %v", err)
	}
}
