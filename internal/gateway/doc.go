// Package gateway assembles the server: store, identity, policy, recorder, protocol listeners
// and the API, and runs them through a staged shutdown.
package gateway
