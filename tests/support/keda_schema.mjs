// Validates KEDA objects against KEDA's API schema, as @kubernetes-models/keda compiles it from KEDA's own types.
// Usage: node keda_schema.mjs NODE_MODULES < documents.json; prints a JSON list of the problems found.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [modules] = process.argv.slice(2);
const keda = await import(pathToFileURL(`${modules}/@kubernetes-models/keda/keda.sh/v1alpha1/index.js`).href);
const problems = [];
for (const [index, document] of JSON.parse(readFileSync(0, "utf8")).entries()) {
  const Kind = keda[document.kind];
  if (Kind === undefined) {
    problems.push(`document ${index}: ${document.kind} is not a keda.sh/v1alpha1 kind`);
    continue;
  }
  try {
    new Kind(document).validate();
  } catch (error) {
    problems.push(`document ${index} (${document.kind}): ${error.message}`);
  }
}
console.log(JSON.stringify(problems));
