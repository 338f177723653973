package providers

import "fmt"

// ValidProviderID reports whether id is a provider slug: lowercase letters,
// digits, '_' and '-', starting with a letter or digit.
func ValidProviderID(id string) bool {
	return isSlug(id)
}

// ValidateBaseURL returns an error unless raw is an http or https URL with a
// host. The error shows the URL with its password redacted.
func ValidateBaseURL(raw string) error {
	return validateBaseURL(raw)
}

// ValidHeaderName reports whether name is an RFC 9110 field name (a token).
func ValidHeaderName(name string) bool {
	return isHeaderName(name)
}

// ValidateModelName returns an error for an empty logical model name or one
// with surrounding spaces or control characters.
func ValidateModelName(name string) error {
	return validateModelName(name)
}

// AddModel validates model and adds it to the catalog, or adds nothing and
// returns an error. Unlike AddProvider, it keeps weights as given, and every
// candidate must name a provider that the catalog already contains. A model
// name that the catalog already contains is an error.
func (c *Catalog) AddModel(model LogicalModel) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	providerExists := func(id string) bool {
		_, ok := c.providers[id]
		return ok
	}
	model, err := normalizeModel(model, providerExists)
	if err != nil {
		return err
	}
	if _, ok := c.models[model.Name]; ok {
		return fmt.Errorf("duplicate logical model name %q", model.Name)
	}
	c.models[model.Name] = model
	return nil
}
