// Starts Swagger UI on /api/v1/docs. A file of its own, not an inline script, so that the
// page's Content-Security-Policy can refuse every inline script (api/docs.py).
"use strict";

(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    // No top bar: its box would load any document a visitor types in.
    layout: "BaseLayout",
    // The default draws a badge from a public validator, giving it the document's URL.
    validatorUrl: null,
    // An API key is kept in this page's memory only, never in the browser's storage.
    persistAuthorization: false,
  });
})();
