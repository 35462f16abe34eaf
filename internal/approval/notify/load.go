package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// Secret reads the secret in the environment variable name, which the configuration field
// names (e.g. bot_token_env). An empty name is no secret: "". A variable that is unset or empty
// is an error that names it. The Dispatcher keeps what is read, so that a notifier whose secret
// changes is replaced on the next Load.
type Secret func(field, name string) (string, error)

// SlackBuilder builds one Slack notifier from its policy configuration, reading its secrets with
// secret and sending with hc.
type SlackBuilder func(name string, c *policyv1.SlackNotifier, secret Secret, hc *http.Client) (Notifier, error)

// Set puts ns in force in place of the notifiers there were. A notifier already in force (the
// same value) keeps its queue; one replaced or removed first delivers what it has queued.
func (d *Dispatcher) Set(ns ...Notifier) {
	lanes := make(map[string]*lane, len(ns))
	for _, n := range ns {
		lanes[n.Name()] = &lane{n: n, key: fmt.Sprintf("%p", n)}
	}
	d.swap(lanes)
}

// Load builds the notifiers of a policy (policy.Snapshot.Notifiers), reading their secrets
// from the environment, and puts them in force. A notifier whose configuration and secrets are
// unchanged is kept, with what it has queued and the Slack messages it can still update. If
// any notifier cannot be built (a secret's environment variable is not set, a URL is not
// allowed) Load changes nothing and returns every problem, naming the variable.
func (d *Dispatcher) Load(cfgs []*policyv1.Notifier) error {
	lanes := make(map[string]*lane, len(cfgs))
	var problems []string
	for _, c := range cfgs {
		n, key, err := d.build(c)
		if err != nil {
			problems = append(problems, fmt.Sprintf("notifier %q: %v", c.GetName(), err))
			continue
		}
		lanes[c.GetName()] = &lane{n: n, key: key} // swap keeps the running one if key is unchanged
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.swap(lanes)
	return nil
}

// build makes one notifier from its configuration. key changes when the configuration or a
// secret does.
func (d *Dispatcher) build(c *policyv1.Notifier) (n Notifier, key string, err error) {
	var secrets []string
	env := func(field, name string) (string, error) {
		if name == "" {
			return "", nil
		}
		v, ok := d.cfg.Getenv(name)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s (%s) is not set", name, field)
		}
		secrets = append(secrets, v)
		return v, nil
	}
	switch {
	case c.GetSlack() != nil:
		if d.cfg.Slack == nil {
			return nil, "", errors.New("slack: no Slack notifiers can be built here (DispatcherConfig.Slack is not set)")
		}
		n, err = d.cfg.Slack(c.GetName(), c.GetSlack(), env, d.cfg.HTTPClient)
	case c.GetWebhook() != nil:
		w := c.GetWebhook()
		if w.GetSecretEnv() == "" {
			return nil, "", errors.New("webhook: secret_env is required")
		}
		var secret string
		if secret, err = env("secret_env", w.GetSecretEnv()); err != nil {
			return nil, "", err
		}
		n, err = NewWebhook(WebhookConfig{Name: c.GetName(), URL: w.GetUrl(), Secret: secret, HTTPClient: d.cfg.HTTPClient})
	default:
		return nil, "", errors.New("set slack or webhook")
	}
	if err != nil {
		return nil, "", err
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	h.Write(raw)
	for _, s := range secrets {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// swap puts lanes in force: lanes already running with the same key are kept, new ones start,
// and the rest stop once they have delivered what they hold.
func (d *Dispatcher) swap(lanes map[string]*lane) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for name, l := range d.lanes {
		if nl := lanes[name]; nl != nil && nl.key == l.key {
			lanes[name] = l
			continue
		}
		close(l.q)
	}
	for _, l := range lanes {
		if l.q == nil {
			l.q = make(chan job, d.cfg.QueueSize)
			d.wg.Add(1)
			go d.run(l)
		}
	}
	d.lanes = lanes
}
