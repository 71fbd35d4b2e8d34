// Starts the vendored Swagger UI (global SwaggerUIBundle) on the API's own OpenAPI document.
// The document's URL is resolved from this module's URL (<api root>/viewer/static/docs/), so the
// page keeps working behind a proxy that mounts the API under a sub-path.
const openapi = new URL("../../../openapi.json", import.meta.url).href;

window.SwaggerUIBundle({
  url: openapi,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // No "try it out" validator: it would send the document to validator.swagger.io.
  validatorUrl: null,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
