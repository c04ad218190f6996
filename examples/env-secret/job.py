import os

# Read when the module is imported: runtime_env and the secret file are applied before that.
DJANGO_DEBUG = os.environ.get('DJANGO_DEBUG') == 'true'
MODEL_ZOO = os.environ.get('TORCH_MODEL_ZOO')
API_TOKEN = os.environ.get('API_TOKEN', '')


class JobEntrypoint:
    def perform(self) -> dict:
        """Report the configuration the job runs with (the secret only as configured or not)"""
        return {
            'debug': DJANGO_DEBUG,
            'model_zoo': MODEL_ZOO,
            'api_token_configured': API_TOKEN not in ('', 'placeholder'),
        }
