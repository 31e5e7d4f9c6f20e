// Package oidc signs users in with OpenID Connect providers: discovery, a cached key set
// refreshed on rotation, token validation that says why a token is refused, the mapping of
// claims to an Airlock identity, and the authorization-code (PKCE), device and refresh grants
// the gateway runs on the CLI's behalf.
package oidc
