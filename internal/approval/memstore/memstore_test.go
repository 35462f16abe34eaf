package memstore_test

import (
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) approval.Store { return memstore.New() })
}
