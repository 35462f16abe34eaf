package slack

import (
	"errors"
	"net/http"

	"github.com/agentauthz/agentauthz/internal/approval/notify"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// Builder returns what builds a policy's Slack notifiers, for notify.DispatcherConfig.Slack.
// apiURL is Slack's Web API base URL; empty means https://slack.com/api/. Tests point it at a
// local server.
func Builder(apiURL string) notify.SlackBuilder {
	return func(name string, s *policyv1.SlackNotifier, secret notify.Secret, hc *http.Client) (notify.Notifier, error) {
		c := Config{Name: name, Channel: s.GetChannel(), APIURL: apiURL, HTTPClient: hc}
		switch {
		case s.GetBotTokenEnv() != "" && s.GetWebhookUrlEnv() != "":
			return nil, errors.New("slack: set bot_token_env or webhook_url_env, not both")
		case s.GetBotTokenEnv() == "" && s.GetWebhookUrlEnv() == "":
			return nil, errors.New("slack: set bot_token_env (with channel) or webhook_url_env")
		case s.GetBotTokenEnv() != "" && s.GetChannel() == "":
			return nil, errors.New("slack: channel is required with bot_token_env")
		}
		var err error
		if c.BotToken, err = secret("bot_token_env", s.GetBotTokenEnv()); err != nil {
			return nil, err
		}
		if c.WebhookURL, err = secret("webhook_url_env", s.GetWebhookUrlEnv()); err != nil {
			return nil, err
		}
		if c.SigningSecret, err = secret("signing_secret_env", s.GetSigningSecretEnv()); err != nil {
			return nil, err
		}
		n, err := New(c)
		if err != nil {
			return nil, err
		}
		return n, nil
	}
}

// Any reports whether a Slack notifier is among ns (notify.Dispatcher.Notifiers).
func Any(ns []notify.Notifier) bool {
	for _, n := range ns {
		if _, ok := n.(*Notifier); ok {
			return true
		}
	}
	return false
}

// SigningSecrets returns the signing secrets of the Slack notifiers among ns
// (notify.Dispatcher.Notifiers): the ones Interactions accepts button clicks under.
func SigningSecrets(ns []notify.Notifier) []string {
	var secrets []string
	for _, n := range ns {
		if s, ok := n.(*Notifier); ok && s.signingSecret != "" {
			secrets = append(secrets, s.signingSecret)
		}
	}
	return secrets
}
