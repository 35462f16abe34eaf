package bi

// The canned data of the demo: what ACME's reporting database would hold.

// Revenue is the revenue of one quarter.
type Revenue struct {
	Total    float64
	Currency string
}

// Customer is one customer. Email and Phone are personal data: agentauthz grants no agent them.
type Customer struct {
	ID     string
	Name   string
	Email  string
	Phone  string
	Orders []*Order
}

// Order is one order of a customer.
type Order struct {
	ID       string
	Total    float64
	Customer *Customer
}

func seedRevenue() map[string]*Revenue {
	return map[string]*Revenue{
		"2025-Q4": {Total: 1184250.00, Currency: "EUR"},
		"2026-Q1": {Total: 1251730.50, Currency: "EUR"},
		"2026-Q2": {Total: 1318904.25, Currency: "EUR"},
		"2026-Q3": {Total: 1402118.75, Currency: "EUR"},
	}
}

// seedCustomers returns the customers, newest first.
func seedCustomers() []*Customer {
	cs := []*Customer{
		{ID: "c-104", Name: "Globex GmbH", Email: "ap@globex.example", Phone: "+49 30 5550104"},
		{ID: "c-103", Name: "Initech SARL", Email: "billing@initech.example", Phone: "+33 1 5550103"},
		{ID: "c-102", Name: "Umbrella BV", Email: "finance@umbrella.example", Phone: "+31 20 5550102"},
		{ID: "c-101", Name: "Stark Industries Ltd", Email: "accounts@stark.example", Phone: "+44 20 5550101"},
	}
	orders := map[string][]float64{
		"c-104": {12500.00, 4820.50},
		"c-103": {980.00},
		"c-102": {23100.00, 1750.25, 640.00},
		"c-101": {55000.00},
	}
	n := 9001
	for _, c := range cs {
		for _, total := range orders[c.ID] {
			c.Orders = append(c.Orders, &Order{ID: "o-" + itoa(n), Total: total, Customer: c})
			n++
		}
	}
	return cs
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}
