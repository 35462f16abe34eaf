package demoagent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// The BI agent's GraphQL documents.
const (
	RevenueQuery   = `query Revenue { revenue(quarter: "2026-Q3") { total currency } }`
	CustomersQuery = `query TopCustomers { customers(first: 3) { name orders { id total } } }`
	EmailQuery     = `query Emails { customers(first: 5) { name email } }`
	DeleteMutation = `mutation Cleanup { deleteCustomer(id: "c-101") }`
)

func graphqlBody(query string) string {
	b, _ := json.Marshal(map[string]string{"query": query}) // strings always marshal
	return string(b)
}

// biStory is the BI agent's report: what it may read, and what it may not.
func (a *agent) biStory(ctx context.Context) error {
	a.begin("bi", "the business-intelligence agent", a.cfg.BIEnvoy)

	var revenue struct {
		Data struct {
			Revenue *struct {
				Total    float64 `json:"total"`
				Currency string  `json:"currency"`
			} `json:"revenue"`
		} `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := a.query(ctx, "revenue of 2026-Q3", RevenueQuery, true, &revenue); err != nil {
		return err
	}
	if revenue.Data.Revenue == nil || len(revenue.Errors) > 0 {
		return fmt.Errorf("no revenue in the answer: %v", revenue.Errors)
	}
	a.printf("    ← 200: revenue %.2f %s\n", revenue.Data.Revenue.Total, revenue.Data.Revenue.Currency)

	var customers struct {
		Data struct {
			Customers []struct {
				Name   string `json:"name"`
				Orders []struct {
					ID string `json:"id"`
				} `json:"orders"`
			} `json:"customers"`
		} `json:"data"`
	}
	if err := a.query(ctx, "top customers and their orders", CustomersQuery, false, &customers); err != nil {
		return err
	}
	var names []string
	for _, c := range customers.Data.Customers {
		names = append(names, fmt.Sprintf("%s (%s)", c.Name, plural(len(c.Orders), "order")))
	}
	a.printf("    ← 200: %s\n", strings.Join(names, ", "))

	if err := a.refused(ctx, "customers' e-mail addresses (personal data)", EmailQuery, "graphql_field"); err != nil {
		return err
	}
	if err := a.refused(ctx, "delete a customer (a mutation)", DeleteMutation, "graphql_operation"); err != nil {
		return err
	}
	a.printf("\n")
	return nil
}

// query runs an allowed query and decodes its answer into v.
func (a *agent) query(ctx context.Context, name, query string, startup bool, v any) error {
	ans, err := a.do(ctx, call{name: name, method: "POST", host: BIHost, path: "/graphql", body: graphqlBody(query), startup: startup})
	if err != nil {
		return err
	}
	if err := a.expect(ans, http.StatusOK, ""); err != nil {
		return err
	}
	return decodeJSON(ans, v)
}

// refused runs a query agentauthz must refuse with code.
func (a *agent) refused(ctx context.Context, name, query, code string) error {
	ans, err := a.do(ctx, call{name: name, method: "POST", host: BIHost, path: "/graphql", body: graphqlBody(query)})
	if err != nil {
		return err
	}
	return a.expect(ans, http.StatusForbidden, code)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
