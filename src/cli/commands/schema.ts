import { jsonSchema } from '../../config/schema.js';
import { Output } from '../output.js';

export async function schema(): Promise<number> {
  new Output().data({ $schema: 'https://json-schema.org/draft/2020-12/schema', ...jsonSchema() });
  return 0;
}
