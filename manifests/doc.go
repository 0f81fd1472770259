// Package manifests holds canarylab's Kubernetes manifests (kustomize
// directories beside this file, each one `kubectl apply -k`-able) and what
// keeps them honest: Generate writes the files copied from pinned Go modules
// and from the repository (make manifests-vendor), and the package's test
// renders every kustomization with the kustomize API and decodes each
// object strictly into its Go type. See README.md for the layout.
package manifests
