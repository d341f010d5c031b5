// Package docs holds the project's documentation: architecture, security
// model, operations and performance notes, as Markdown beside this file.
// It has no code; its test checks that every relative link in every
// Markdown file of the repository resolves to a file inside the
// repository, so that the documentation stays complete on its own.
package docs
