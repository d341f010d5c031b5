// Package deploy holds ewgw's Kubernetes manifests (kustomize; see
// README.md in this directory) and, in its tests, their validation: every
// variant is rendered with kubectl kustomize, checked for what the gateway
// needs (a valid config, the identity files `ewgw certs` writes, hardened
// pods, least-privilege RBAC) and applied with a server-side dry run to a
// real kube-apiserver. The package has no Go code of its own.
package deploy
