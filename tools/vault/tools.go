//go:build tools

// Package tools pins the Vault server that the integration tests start as a dev
// server. It lives in its own module so the product's go.mod stays lean. Vault
// v1.13.0 is MPL-2.0; releases after v1.14.1 are BUSL and must not be used.
package tools

import _ "github.com/hashicorp/vault"
